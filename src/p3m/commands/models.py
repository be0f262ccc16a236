"""`p3m models`: list the models of the toolkit's model folder ($P3M_HOME/models, default ~/.p3m/models)."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "models",
        help="list the models usable by name: the built-in portrait-cf route, trained and dropped-in checkpoints",
        description=(
            "List the built-in portrait-cf route and the models in $P3M_HOME/models (default ~/.p3m/models): "
            "those registered by `p3m demo` and `p3m train --set register_as=NAME`, and checkpoints dropped there "
            "(e.g. the published p3mnet_pretrained_on_p3m10k.pth), with architecture, origin and licence. "
            "The default (marked *) is the published checkpoint when present, else portrait-cf. "
            "Entries that cannot be used (a corrupt file, a broken link, ...) are listed apart with the reason. "
            "Use a NAME with `p3m matte --weights NAME`."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    return parser


def run(args: argparse.Namespace) -> int:
    # the model folder's module loads torch (it reads checkpoints): only when the verb runs, not for `p3m --help`
    from p3m.models.store import default_model, entry_as_dict, list_unusable, list_weights, model_home

    entries, unusable = list_weights(), list_unusable()
    default = default_model()
    default_name = default.name if default is not None else None
    if args.json:
        models = [dict(entry_as_dict(e), default=e.name == default_name) for e in entries]
        bad = [entry_as_dict(e) for e in unusable]
        print(
            json.dumps(
                {"home": str(model_home()), "default": default_name, "models": models, "unusable": bad}, indent=2
            )
        )
        return 0
    rows = [("NAME", "ARCH", "FORMAT", "ORIGIN", "LICENCE", "CREATED", "PATH")]
    rows += [
        (
            ("* " if e.name == default_name else "  ") + e.name,
            e.arch or "unknown",
            e.format,
            e.origin,
            e.licence or "-",
            e.created or "-",
            str(e.path),
        )
        for e in entries
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    print(f"({len(entries)} model(s): the built-in route and {model_home()}; * = used when none is named)")
    if unusable:
        print(f"{len(unusable)} unusable entr{'y' if len(unusable) == 1 else 'ies'} of the model folder, left out:")
        for e in unusable:
            print(f"  {e.name}: {e.problem}")
    return 0
