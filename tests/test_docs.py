"""Every command in README.md and docs/*.md runs as written from an empty folder outside the checkout.

The fenced shell blocks of each document are read in order, and each `p3m` command in them is run in one folder
of that document's own (under the test's tmp_path, outside the repository) through `p3m.cli.main`, after a change
of directory, with its own empty model folder. The folder holds only the inputs the documents name as the user's
own (`INPUTS`: `photos/`, `refs/`, ...). Commands run with smaller sizes where `SMALLER` says so; commands that
need what a clone does not have are not run but parsed, for the reasons `NOT_RUN` gives. A usage synopsis (`p3m
train RECIPE|CONFIG.yaml [--set ...]`) is checked option by option. Every `p3m ...` in inline code of the prose
must name options its verb has. Other programs: `make` runs in a checkout (it sets up `.venv` there), the
`benchmarks/` scripts in a checkout's root (their lines say so), `curl` against a running `p3m serve`.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from p3m import cli
from tests.paths import REAL_PHOTOS, REFERENCE_ALPHA, REPO

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# What a command needs that a fresh clone does not have: such commands are parsed, not run.
NOT_RUN = {
    "/data/P3M-10k": "needs the real P3M-10k (a manual download under a research licence)",
    "/data/faces": "needs a face dataset of the user's (e.g. CelebAMask-HQ)",
    "p3mnet_pretrained_on_p3m10k": "needs the published checkpoint (a manual download, docs/models.md)",
    "--device cuda": "needs a CUDA GPU",
    "p3m serve": "starts a server that runs until stopped; tests/test_serve_*.py start it and send these requests",
    "p3m train p3m-": "trains a published recipe on the real P3M-10k (its data.root), days on a GPU",
    "--cluster": "starts or joins a Ray cluster; tests/test_cluster.py runs these jobs on a local cluster it starts",
}
# Commands run with smaller sizes than written (same options otherwise): added or replaced arguments.
TINY_BENCHMARK = [
    "--set",
    "dataset.synth={n_train: 4, n_test_p: 2, n_test_np: 2, size: [64, 64], seed: 0}",
    "--set",
    "train.train.max_steps=2",
    "--set",
    "methods=[{name: P3M-Net R34, type: p3m-r34, width: 8}, {name: BASIC, type: basic-r34, width: 8}]",
    "--set",
    "report.grid_samples=1",
    "-q",
]
# Placeholders a document's commands use for a folder of the user's: the test's stand-in for it (see _make_inputs).
PLACEHOLDERS = {"ROOT": "my-dataset"}
# Commands whose documented outcome may be another exit code: the code and what the output then says.
OTHER_OUTCOMES = {
    # the shipped photos may still show a face the audit flags (an already-blurred face under kept hair): it says so
    "p3m audit": (1, "leak"),
}
SMALLER = {
    "p3m synth": {"--train": "4", "--test": "2", "--size": "64"},
    "p3m train demo": ["--set", "train.max_steps=2", "--set", "train.batch_size=2", "-q"],
    "p3m benchmark ppt-demo": TINY_BENCHMARK,
    "p3m benchmark my-benchmark.yaml": ["-q"],
}


def _photo(size: tuple[int, int]) -> bytes:
    """A real photo (the shipped profile photo) resized to size (W, H), as JPEG bytes."""
    import io

    buf = io.BytesIO()
    Image.open(REAL_PHOTOS[1]).resize(size, Image.BICUBIC).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _make_inputs(folder: Path) -> None:
    """The user's own files the documents name, made from the real photos shipped in tests/data."""
    (folder / "photos").mkdir()
    (folder / "refs").mkdir()
    for photo in REAL_PHOTOS:
        shutil.copyfile(photo, folder / "photos" / photo.name)
        shutil.copyfile(REFERENCE_ALPHA / f"{photo.stem}.png", folder / "refs" / f"{photo.stem}.png")
    for day, photo in enumerate(REAL_PHOTOS[:2]):  # a shoot in sub-folders, other names than photos/
        (folder / "shoot" / f"day{day}").mkdir(parents=True)
        shutil.copyfile(photo, folder / "shoot" / f"day{day}" / f"shot{day}.jpg")
    (folder / "mattes").mkdir()  # mattes of photos/, named by stem (privacy.md's --alpha mattes/)
    for photo in REAL_PHOTOS:
        shutil.copyfile(REFERENCE_ALPHA / f"{photo.stem}.png", folder / "mattes" / f"{photo.stem}.png")
    (folder / "photo.jpg").write_bytes(_photo((640, 400)))
    # ROOT of privacy.md: your photos and their mattes, to be converted into a P3M-style dataset
    for sub, source, suffix in (("original_image", REAL_PHOTOS, ".jpg"), ("mask", REAL_PHOTOS, ".png")):
        (folder / "my-dataset" / sub).mkdir(parents=True)
        for photo in source:
            src = photo if suffix == ".jpg" else REFERENCE_ALPHA / f"{photo.stem}.png"
            shutil.copyfile(src, folder / "my-dataset" / sub / f"{photo.stem}{suffix}")
    # your own benchmark config: the built-in ppt-demo recipe at toy size
    (folder / "my-benchmark.yaml").write_text(
        "name: mine\n"
        "dataset: {synth: {n_train: 4, n_test_p: 2, n_test_np: 2, size: [64, 64], seed: 1}}\n"
        "train: {data: {crop_sizes: [64], resize: 64, workers: 0, pin_memory: false},"
        " train: {max_steps: 2, batch_size: 2}, val: {every: 0}}\n"
        "evaluation: {fast: true}\n"
        "report: {grid_samples: 1}\n"
        "methods: [{name: P3M-Net R34, type: p3m-r34, width: 8}, {name: Closed-form, type: closed-form, "
        "max_images: 1, max_side: 64}]\n"
    )


@dataclass(frozen=True)
class Command:
    document: Path
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.document.relative_to(REPO)}:{self.line}: {self.text}"


_FENCE = re.compile(r"^(\s*)```(\w*)\s*$")


def shell_commands(document: Path) -> list[Command]:
    """The commands of the document's fenced shell blocks (no language, bash, sh, shell), in order: continuation
    lines joined, comments dropped, `a && b` split."""
    commands: list[Command] = []
    lines = document.read_text(encoding="utf-8").splitlines()
    inside, language, pending, start = False, "", "", 0
    for number, raw in enumerate(lines, 1):
        fence = _FENCE.match(raw)
        if fence:
            inside, language = (not inside, fence[2]) if not inside else (False, "")
            continue
        if not inside or language not in ("", "bash", "sh", "shell"):
            continue
        text = raw.strip()
        if not pending:
            start = number
        if text.endswith("\\"):
            pending += text[:-1].rstrip() + " "
            continue
        text, pending = pending + text, ""
        text = re.sub(r"\s+#.*$", "", text).strip()  # a trailing comment (no '#' inside quotes in these docs)
        if not text or text.startswith("#"):
            continue
        commands += [Command(document, start, part.strip()) for part in text.split("&&")]
    return commands


def _program(command: Command) -> str:
    words = command.text.split()
    return next(w for w in words if "=" not in w)  # skip VAR=value prefixes


def _is_synopsis(argv: list[str]) -> bool:
    """A usage line, not a command: placeholders in capitals, [optional] parts, a|b choices, '...'."""
    return any(
        w.startswith("[") or w.endswith("]") or w == "..." or re.fullmatch(r"[A-Z_]+(\|[A-Z_]+)*(\.yaml)?", w)
        for w in argv[1:]
    )


def _verb_options() -> dict[str, set[str]]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {verb: {s for a in p._actions for s in a.option_strings} for verb, p in sub.choices.items()}


def _check_options(argv: list[str], where: object) -> None:
    """Every option of a `p3m VERB ...` text (synopsis or inline code) is one --help shows for the verb."""
    options = _verb_options()
    verb = argv[1] if len(argv) > 1 else ""
    if verb not in options:
        return  # `p3m VERB --help` and the like
    for word in argv[2:]:
        name = word.strip("[]|,.;:").split("=")[0]
        if re.fullmatch(r"--?[a-z][a-z0-9-]*", name):
            assert name in options[verb], f"{where}: p3m {verb} has no option {name}"


def _with_placeholders(words: list[str]) -> list[str]:
    """ROOT/original_image -> my-dataset/original_image: the test's folders for the documents' placeholders."""
    out = []
    for word in words:
        head, sep, tail = word.partition("/")
        out.append(PLACEHOLDERS[head] + sep + tail if head in PLACEHOLDERS else word)
    return out


def _argv(command: Command) -> list[str]:
    argv = _with_placeholders(shlex.split(command.text))
    for prefix, change in SMALLER.items():
        if command.text.startswith(prefix):
            if isinstance(change, dict):
                argv = [change.get(argv[i - 1], w) if i else w for i, w in enumerate(argv)]
            else:
                argv = argv + change
    return argv[1:]  # without "p3m"


def _reason_not_run(command: Command) -> str | None:
    return next((why for needle, why in NOT_RUN.items() if needle in command.text), None)


def test_the_documents_have_commands_to_check():
    commands = [c for d in DOCUMENTS for c in shell_commands(d)]
    assert len([c for c in commands if _program(c) == "p3m"]) >= 25
    known = {"p3m", "make", "curl", "torchrun", ".venv/bin/python", "python", "pip", "ray"}
    assert {_program(c) for c in commands} <= known, {str(c) for c in commands if _program(c) not in known}


def test_every_inline_p3m_command_names_real_options():
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for match in re.finditer(r"`(p3m [^`]+)`", text):
            line = text[: match.start()].count("\n") + 1
            _check_options(match[1].split(), f"{document.relative_to(REPO)}:{line}: {match[1]}")


def test_other_programs_say_where_they_run():
    for document in DOCUMENTS:
        lines = document.read_text(encoding="utf-8").splitlines()
        for command in shell_commands(document):
            program = _program(command)
            if program in (".venv/bin/python", "python"):  # the benchmarks/ scripts: a checkout's root
                assert "-m benchmarks." in command.text, command
                near = " ".join(lines[max(0, command.line - 4) : command.line])
                assert "repository root" in near, f"{command}: say that it runs in the repository root"
            elif program == "pip":  # only p3m itself, with extras the package declares
                assert re.fullmatch(r"pip install '?p3m(\[[a-z,]+\])?'?", command.text.split("#")[0].strip()), command
            elif program == "ray":  # starting or joining a cluster (docs/cluster.md)
                assert command.text.startswith("ray start "), command
            elif program == "torchrun":  # the p3m command it launches must parse
                tail = command.text.split("train", 1)[1]
                _check_options(["p3m", "train", *shlex.split(tail)], command)


@pytest.mark.slow
@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: d.name)
def test_every_command_of_a_document_runs_from_an_empty_folder(document, tmp_path, monkeypatch, home, capsys):
    commands = shell_commands(document)
    if not any(_program(c) == "p3m" for c in commands):
        pytest.skip(f"{document.name} has no p3m command")
    workspace = tmp_path / "work"
    workspace.mkdir()
    assert not workspace.resolve().is_relative_to(REPO)
    _make_inputs(workspace)
    monkeypatch.chdir(workspace)
    if "demo-r34" in document.read_text(encoding="utf-8"):
        _register_a_demo_model(tmp_path)
    parser = cli.build_parser()
    ran, not_run = [], []
    for command in commands:
        if _program(command) != "p3m":
            continue
        words = _with_placeholders(shlex.split(command.text))
        if _is_synopsis(words):
            _check_options(words, command)
            continue
        argv = _argv(command)
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"{command}: does not parse ({capsys.readouterr().err.strip()}; exit {exc.code})")
        reason = _reason_not_run(command)
        if reason is not None:
            not_run.append(f"{command}: {reason}")
            continue
        code = cli.main(argv)
        out, err = capsys.readouterr()
        other = next((v for k, v in OTHER_OUTCOMES.items() if command.text.startswith(k)), None)
        if other is not None and code == other[0]:
            assert other[1] in out + err, f"{command}: exit {code} without saying {other[1]!r}"
        else:
            assert code == 0, f"{command}: exit {code}\n{err[-2000:]}"
        ran.append(command.text)
    print(f"\n{document.name}: ran {len(ran)}, parsed only {len(not_run)}:\n  " + "\n  ".join(not_run))


def _register_a_demo_model(tmp_path: Path) -> None:
    """What `p3m demo` leaves in the model folder: `demo-r34` (here a tiny untrained one, registered the same way)."""
    import torch

    from p3m.models import create
    from p3m.models import store as model_store
    from p3m.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    path = save_checkpoint(create("p3m-r34", width=8), tmp_path / "ckpt" / "last")
    model_store.register(path, "demo-r34", arch="p3m-r34", origin=f"p3m demo ({tmp_path})")


def test_the_shell_block_reader():
    """Continuations are joined, comments and other languages dropped, `&&` chains split."""
    sample = (
        "text\n```bash\n# a comment\np3m synth data --size 64   # trailing comment\n"
        "p3m train demo \\\n    --set a=1 -o runs/x && p3m models\n```\n"
        "```python\np3m.Matter()\n```\n   ```\n   p3m models --json\n   ```\n"
    )
    return_value = _read_sample(sample)
    assert [c.text for c in return_value] == [
        "p3m synth data --size 64",
        "p3m train demo --set a=1 -o runs/x",
        "p3m models",
        "p3m models --json",
    ]
    assert [c.line for c in return_value] == [4, 5, 5, 12]
    assert _is_synopsis(shlex.split("p3m synth OUT [--train N]")) and not _is_synopsis(["p3m", "synth", "data"])
    assert _argv(return_value[0]) == ["synth", "data", "--size", "64"]


def _read_sample(text: str) -> list[Command]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sample.md"
        path.write_text(text)
        commands = shell_commands(path)
    return [Command(REPO / "README.md", c.line, c.text) for c in commands]


def test_shipped_texts_cite_public_sources():
    """A user's clone has only the project: docs, docstrings, configs and reports cite the papers and the authors'
    repositories, never the project's internal specification (its section signs) or a folder beside the checkout."""
    shipped = [*DOCUMENTS, *(REPO / "src" / "p3m").rglob("*.py"), *(REPO / "src" / "p3m" / "configs").rglob("*.yaml")]
    found = []
    for path in shipped:
        text = path.read_text(encoding="utf-8")
        for pattern in (r"§\s*\d", r"\.\./shared\b", r"p3m-reference"):
            found += [f"{path.relative_to(REPO)}: {m[0]!r}" for m in re.finditer(pattern, text)]
    assert not found, found
