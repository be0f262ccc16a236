"""`p3m models`: list the models of the toolkit's model folder ($P3M_HOME/models, default ~/.p3m/models)."""
from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "models",
        help="list trained / downloaded models usable by name",
        description=(
            "List the models in $P3M_HOME/models (default ~/.p3m/models): those registered by `p3m train` and "
            "`p3m demo`, and checkpoints dropped there (e.g. the published p3mnet_pretrained_on_p3m10k.pth), "
            "with architecture and origin. Use a NAME with `p3m matte --weights NAME`."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    return parser


def run(args: argparse.Namespace) -> int:
    from p3m.model_store import entry_as_dict, list_models, missing_weights_help, model_home

    entries = list_models()
    if args.json:
        print(json.dumps({"home": str(model_home()), "models": [entry_as_dict(e) for e in entries]}, indent=2))
        return 0
    if not entries:
        print(missing_weights_help())
        return 0
    rows = [("NAME", "ARCH", "FORMAT", "ORIGIN", "CREATED", "PATH")]
    rows += [(e.name, e.arch or "unknown", e.format, e.origin, e.created, str(e.path)) for e in entries]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    print(f"({len(entries)} model(s) in {model_home()})")
    return 0
