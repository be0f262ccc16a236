"""The toolkit's model folder: where trained and downloaded weights live, by name.

Folder: `$P3M_HOME/models` (default `~/.p3m/models`). `p3m demo` and `p3m train --set register_as=NAME`
call `register`, which copies the checkpoint (and its JSON sidecar) in and records it in `index.json`; users
may also drop published files (`p3mnet_pretrained_on_p3m10k.pth`, `*.safetensors`, exported `*.onnx`) into
the folder. `list_weights` reports both, plus the built-in `portrait-cf` route (shipped with the package),
guessing the architecture of dropped files from their key names without unpickling anything unsafe
(weights-only loading; safetensors and ONNX headers only). Architectures (what `create` builds) are another list:
`p3m.models.list_architectures`.

The default model (no name given) is the published P3M-Net checkpoint when it is in the folder, else the
built-in `portrait-cf`; every other model is used only when named.

A bad entry never breaks the folder: a corrupt `index.json`, an invalid sidecar, a weights "file" that is a folder,
an empty or unreadable file, a symlink to nowhere or in a loop is listed by `list_unusable` with the reason, and left
out of `list_weights` (so the default and every other model still work); naming it gives that reason.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from p3m.atomic import copy_file_atomic, write_bytes_atomic
from p3m.errors import CheckpointError, os_error_message
from p3m.io import missing_reason
from p3m.models.shipped_weights import selfie_weights_path
from p3m.models.sidecar import error_reason, read_json, read_sidecar, sidecar_path, unpickler_reason

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "BUILTIN",
    "BUILTIN_LICENCE",
    "DEFAULT_ARCH",
    "PUBLISHED_R34",
    "WEIGHT_SUFFIXES",
    "ModelEntry",
    "builtin_entry",
    "choose_arch",
    "default_model",
    "entry_as_dict",
    "guess_arch",
    "list_unusable",
    "list_weights",
    "load_network",
    "missing_weights_help",
    "model_home",
    "register",
    "replacement_note",
    "resolve",
    "trained_on_synthetic",
]

INDEX_NAME = "index.json"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".tar", ".onnx")
PUBLISHED_R34 = "p3mnet_pretrained_on_p3m10k.pth"
PUBLISHED_LICENCE = "MIT (P3M authors)"
# the built-in route (p3m.infer.portrait): its name is also its "architecture"; it cannot be registered over
BUILTIN = "portrait-cf"
BUILTIN_LICENCE = "Apache-2.0 (MediaPipe selfie segmentation weights)"
#: What an unlabelled torch weights file is taken for: the architecture of the published checkpoint.
DEFAULT_ARCH = "p3m-r34"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# key prefixes that identify an architecture (reference 4.5, 5.3, 6.3)
_ARCH_KEYS = (
    ("resnet.", "p3m-r34"),
    ("encoder.layers.0.RC", "p3m-vitae-s"),
    ("encoder.patch_embed", "p3m-swin-t"),
)


@dataclass(frozen=True)
class ModelEntry:
    """One model of the folder. origin: what made it ("demo", "train", "published", "dropped file", ...)."""

    name: str
    path: Path
    arch: str | None
    origin: str
    created: str
    format: str = field(default="")  # "safetensors", "pth", "onnx" or "builtin"
    registered: bool = field(default=False)
    licence: str = field(default="")  # known for the built-in route and the published checkpoint
    problem: str = field(default="")  # why it cannot be used (`list_unusable`); "" for a usable entry


def builtin_entry() -> ModelEntry:
    """The built-in `portrait-cf` route: shipped segmentation weights, nothing to download or train."""
    return ModelEntry(
        BUILTIN,
        selfie_weights_path(),
        BUILTIN,
        "built-in: segmentation + closed-form",
        "",
        "builtin",
        False,
        BUILTIN_LICENCE,
    )


def model_home() -> Path:
    """`$P3M_HOME/models`, or `~/.p3m/models` when P3M_HOME is unset (not created here)."""
    root = os.environ.get("P3M_HOME")
    base = Path(root).expanduser() if root else Path.home() / ".p3m"
    return base / "models"


def missing_weights_help() -> str:
    """How to get weights, for error messages."""
    return (
        f"no trained weights found in {model_home()}; `p3m demo` registers its model there, `p3m train` does "
        f"with `--set register_as=NAME`; drop the published {PUBLISHED_R34} into that folder "
        f"(docs/models.md says where to get it), or pass --weights PATH (or --weights {BUILTIN})"
    )


def _format_of(path: Path) -> str:
    if path.suffix == ".safetensors":
        return "safetensors"
    if path.suffix == ".onnx":
        return "onnx"
    return "pth"


def _read_index(home: Path) -> dict[str, dict[str, Any]]:
    p = home / INDEX_NAME
    if not p.is_file():
        return {}
    data = read_json(p, "model index", "; fix or delete it")
    models = data.get("models", {}) if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise CheckpointError(f"{p}: not a model index (no 'models' object); fix or delete it")
    return models


def _write_index(home: Path, models: dict[str, dict[str, Any]]) -> None:
    text = json.dumps({"version": 1, "models": models}, indent=2, sort_keys=True) + "\n"
    write_bytes_atomic(home / INDEX_NAME, text.encode("utf-8"))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())


def register(checkpoint_path: str | os.PathLike[str], name: str, *, arch: str, origin: str, copy: bool = True) -> Path:
    """Record a checkpoint under `name`; returns the path the store uses for it.

    copy=True copies the weights (and a p3m JSON sidecar `<stem>.json`, if any) into the folder as
    `<name><suffix>`; copy=False records the absolute path. Re-registering a name replaces it.
    """
    src = Path(checkpoint_path).expanduser()
    if not _NAME_RE.match(name):
        raise CheckpointError(f"invalid model name {name!r}: use letters, digits, '.', '_' and '-'")
    if name == BUILTIN:
        raise CheckpointError(f"{name!r} is the built-in route's name; choose another name")
    if not src.is_file():
        raise CheckpointError(f"{src}: checkpoint file not found")
    home = model_home()
    home.mkdir(parents=True, exist_ok=True)
    if copy:
        dst = home / f"{name}{src.suffix}"
        if src.resolve() != dst.resolve():
            copy_file_atomic(src, dst)
        sidecar, stored_sidecar = sidecar_path(src), sidecar_path(dst)
        if src.suffix != ".json" and sidecar.is_file() and sidecar.resolve() != stored_sidecar.resolve():
            copy_file_atomic(sidecar, stored_sidecar)
        stored: str = dst.name
        path = dst
    else:
        path = src.resolve()
        stored = str(path)
    models = _read_index(home)
    models[name] = {"file": stored, "arch": arch, "origin": origin, "created": _now()}
    _write_index(home, models)
    return path


def replacement_note(name: str, origin: str) -> str:
    """What registering ``name`` from ``origin`` would replace: one line when the name is registered from another
    place (e.g. `p3m demo` run in another folder or checkout: the model folder is shared by every checkout of the
    user), "" when nothing or the same origin's model would be replaced.

    Registering copies the weights into the model folder, so the replaced copy's original stays where its origin
    wrote it; the line says so.
    """
    try:
        record = _read_index(model_home()).get(name)
    except CheckpointError:
        return ""
    if record is None or record.get("origin") == origin:
        return ""
    when = f" on {record['created']}" if record.get("created") else ""
    return (
        f"`{name}` was registered by {record.get('origin', 'another run')}{when}; it now names this run's model "
        f"(the weights `{name}` named before stay where that run wrote them)"
    )


def _sidecar_or_nothing(path: Path) -> dict[str, Any]:
    """The sidecar of a weights file for listing and guessing: {} when absent or invalid (loading says why)."""
    try:
        return read_sidecar(path)
    except CheckpointError:
        return {}


def _stored_path(home: Path, record: Any) -> Path:
    """The weights file of an index record (relative names live in the model folder); CheckpointError for a record
    that names none."""
    file = record.get("file") if isinstance(record, dict) else None
    if not isinstance(file, str) or not file:
        raise CheckpointError(f"its record in {home / INDEX_NAME} names no weights file")
    path = Path(file)
    return path if path.is_absolute() else home / path


def _keys_arch(keys: list[str]) -> str | None:
    keys = [k[len("module.") :] if k.startswith("module.") else k for k in keys]
    for prefix, arch in _ARCH_KEYS:
        if any(k.startswith(prefix) for k in keys):
            return arch
    return None


def _onnx_metadata(path: Path) -> dict[str, str]:
    """The metadata `p3m export` wrote into an ONNX file (arch, arch_kwargs, dataset_synthetic, ...)."""
    import onnx  # only for .onnx files: the onnx package costs start-up time otherwise

    model = onnx.load(str(path), load_external_data=False)
    return {q.key: q.value for q in model.metadata_props}


def guess_arch(path: str | os.PathLike[str]) -> tuple[str | None, dict[str, Any]]:
    """(arch, arch_kwargs) of a checkpoint file without building a model; (None, {}) if unknown.

    Order: p3m JSON sidecar; safetensors header metadata / key names; ONNX metadata; `.pth` key names
    read with torch's weights-only unpickler (never arbitrary code). R34 width from `resnet.conv1.weight`.
    """
    arch, kwargs, _ = _inspect(Path(path))
    return arch, kwargs


def _file_problem(path: Path) -> str:
    """Why ``path`` cannot be a weights file ("" when it can be opened and read)."""
    try:
        st = os.stat(path)
    except OSError:
        return missing_reason(path)
    if path.is_dir():
        return "is a folder, not a weights file"
    if st.st_size == 0:
        return "empty file (0 bytes)"
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    return ""


def _inspect(p: Path) -> tuple[str | None, dict[str, Any], str]:
    """(arch, arch_kwargs, problem) of a weights file: `guess_arch`, and why the file is unusable ("" if it is not).

    A file that cannot be opened, a sidecar that `read_sidecar` refuses and a header that cannot be read are
    problems; a readable file whose architecture cannot be told is not (its arch is None).
    """
    problem = _file_problem(p)
    if problem:
        return None, {}, problem
    try:
        data = read_sidecar(p)
    except CheckpointError as exc:
        return None, {}, str(exc)
    if data.get("arch"):
        kwargs = data.get("arch_kwargs") or {}
        # not an object: loading reads the sidecar again and says so (p3m.models.check_arch_kwargs)
        return str(data["arch"]), dict(kwargs) if isinstance(kwargs, dict) else {}, ""
    try:
        arch, kwargs = _header_arch(p)
    except Exception as exc:  # whatever a damaged or hostile file makes a reader raise: the file is unusable
        why = unpickler_reason(str(exc)) if isinstance(exc, pickle.UnpicklingError) else error_reason(exc)
        return None, {}, f"unreadable {_format_of(p)} file ({why})"
    return arch, kwargs, ""


def _header_arch(p: Path) -> tuple[str | None, dict[str, Any]]:
    """(arch, arch_kwargs) from a weights file's own header or key names (no sidecar)."""
    if p.suffix == ".onnx":
        props = _onnx_metadata(p)
        stored = json.loads(props.get("arch_kwargs", "{}"))
        return props.get("arch"), stored if isinstance(stored, dict) else {}
    if p.suffix == ".safetensors":
        from safetensors import safe_open  # header only; torch stays unimported until a .pth is read

        with safe_open(str(p), framework="pt") as f:
            header = f.metadata() or {}
            keys = list(f.keys())
            arch = header.get("arch") or _keys_arch(keys)
            kwargs: dict[str, Any] = {}
            if arch == "p3m-r34" and "resnet.conv1.weight" in keys:
                width = f.get_slice("resnet.conv1.weight").get_shape()[0]
                kwargs = {} if width == 64 else {"width": int(width)}
        return arch, kwargs
    import torch  # weights-only unpickling of a dropped .pth: the one reader that needs torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:
            obj = torch.load(p, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict):
        return None, {}
    for key in ("state_dict", "state_dict_ema", "model_state_dict", "model"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    arch = _keys_arch([str(k) for k in obj])
    conv = obj.get("resnet.conv1.weight", obj.get("module.resnet.conv1.weight"))
    if arch == "p3m-r34" and conv is not None and conv.shape[0] != 64:
        return arch, {"width": int(conv.shape[0])}
    return arch, {}


def _scan() -> tuple[dict[str, ModelEntry], list[ModelEntry]]:
    """(usable entries by name, unusable entries with their problem) of the built-in route and the model folder."""
    home = model_home()
    entries: dict[str, ModelEntry] = {BUILTIN: builtin_entry()}
    bad: list[ModelEntry] = []
    claimed: set[str] = set()
    try:
        records = _read_index(home)
    except CheckpointError as exc:
        records = {}
        bad.append(ModelEntry(INDEX_NAME, home / INDEX_NAME, None, "model index", "", "json", problem=str(exc)))
    for name, rec in records.items():
        try:
            path = _stored_path(home, rec)
        except CheckpointError as exc:
            bad.append(ModelEntry(name, home / INDEX_NAME, None, "registered", "", "", True, problem=str(exc)))
            continue
        claimed.add(os.path.abspath(path))
        origin, created = str(rec.get("origin", "registered")), str(rec.get("created", ""))
        arch = rec.get("arch")
        problem = "" if name != BUILTIN else f"{name!r} is the built-in route's name"
        if not problem and not os.path.lexists(path):
            problem = f"registered file {path} is missing"
        if not problem and (arch is not None and not isinstance(arch, str)):
            problem = f"its record in {home / INDEX_NAME} names the architecture {json.dumps(arch)[:60]}, not a name"
        problem = problem or _file_problem(path)
        if not problem:
            try:
                read_sidecar(path)
            except CheckpointError as exc:
                problem = str(exc)
        entry = ModelEntry(name, path, arch, origin, created, _format_of(path), True, problem=problem)
        if problem:
            bad.append(entry)
        else:
            entries[name] = entry
    try:
        listing = sorted(home.iterdir()) if home.is_dir() else []
    except OSError as exc:
        listing = []
        bad.append(ModelEntry(home.name, home, None, "model folder", "", "", problem=os_error_message(exc)))
    for path in listing:
        if path.name.startswith(".") or os.path.abspath(path) in claimed:
            continue
        if not any(path.name.endswith(s) for s in WEIGHT_SUFFIXES):
            continue
        name = path.name[: -len(".pth.tar")] if path.name.endswith(".pth.tar") else path.stem
        if name in entries:
            continue
        arch, _, problem = _inspect(path)
        published = path.name == PUBLISHED_R34
        origin = "published (dropped file)" if published else "dropped file"
        try:
            created = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(path.stat().st_mtime))
        except OSError:
            created = ""
        licence = PUBLISHED_LICENCE if published else ""
        entry = ModelEntry(name, path, arch, origin, created, _format_of(path), False, licence, problem)
        if problem:
            bad.append(entry)
        else:
            entries[name] = entry
    return entries, bad


def list_weights() -> list[ModelEntry]:
    """The built-in route, registered models (index) and weight files dropped into the folder, sorted by name:
    every usable entry (the others are in `list_unusable`). Never raises for what the folder holds."""
    entries, _ = _scan()
    return [entries[k] for k in sorted(entries)]


def list_unusable() -> list[ModelEntry]:
    """The entries of the model folder that cannot be used, each with its `problem` (one line), sorted by name."""
    _, bad = _scan()
    return sorted(bad, key=lambda e: (e.name, str(e.path)))


def default_model(arch: str | None = None, fmt: str | None = None) -> ModelEntry | None:
    """The model used when none is named.

    No architecture asked: the published R34 if it is in the folder, else the built-in `portrait-cf` (ONNX
    asked: the newest .onnx, if any). An architecture asked: the published file of it, else the newest entry.
    """
    # files whose architecture cannot be told (e.g. an ImageNet backbone dropped there) are never picked
    candidates = [
        e
        for e in list_weights()
        if e.arch is not None and (arch is None or e.arch == arch) and (fmt is None or e.format == fmt)
    ]
    for e in candidates:
        if e.path.name == PUBLISHED_R34:
            return e
    if arch is None and fmt is None:
        return builtin_entry()  # trained models (e.g. the demo's, drawn portraits) only when named
    candidates = [e for e in candidates if e.format != "builtin"]
    if not candidates:
        return None
    return max(candidates, key=lambda e: (e.created, e.name))


def resolve(name_or_path: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """A file path, or a model name from the folder -> (path, arch or None if it cannot be told)."""
    p = Path(name_or_path).expanduser()
    if str(name_or_path) == BUILTIN:
        return builtin_entry().path, BUILTIN
    if p.is_file():
        arch, _ = guess_arch(p)
        return p, arch
    name = str(name_or_path)
    usable, bad = _scan()
    for e in usable.values():
        if e.name == name or e.path.name == name:
            return e.path, e.arch
    for e in bad:
        if e.name == name or e.path.name == name:
            raise CheckpointError(f"model {name!r} in {model_home()} cannot be used: {e.problem}")
    if any(sep in name for sep in ("/", os.sep)) or p.suffix in WEIGHT_SUFFIXES:
        raise CheckpointError(f"{p}: {missing_reason(p)}")
    known = ", ".join(sorted(usable))
    if known:
        raise CheckpointError(f"no model named {name!r} in {model_home()} (available: {known}); see `p3m models`")
    raise CheckpointError(f"no model named {name!r}: {missing_weights_help()}")


def trained_on_synthetic(path: str | os.PathLike[str]) -> bool:
    """True for weights trained on drawn portraits: the trainer's sidecar says so, `p3m demo` registered them, or
    (an exported .onnx file) `p3m export` wrote so into its metadata."""
    p = Path(path)
    if _sidecar_or_nothing(p).get("dataset_synthetic"):
        return True
    if p.suffix == ".onnx":
        try:
            if _onnx_metadata(p).get("dataset_synthetic") == "true":
                return True
        except Exception:  # unreadable: loading it says why
            pass
    home = model_home()
    try:
        records = _read_index(home)
    except CheckpointError:
        return False
    for rec in records.values():
        try:
            if str(rec.get("origin", "")).startswith("p3m demo") and _stored_path(home, rec).resolve() == p.resolve():
                return True
        except (CheckpointError, AttributeError):  # a record that is not an object or names no file
            continue
    return False


def entry_as_dict(entry: ModelEntry) -> dict[str, Any]:
    """JSON-friendly view of an entry."""
    d = asdict(entry)
    d["path"] = str(entry.path)
    return d


def choose_arch(path: Path, found: str | None, requested: str | None) -> str | None:
    """The architecture to build for the weights at `path`.

    `found`: what the file says (its sidecar, header or key names); `requested`: what the user asked for. They
    must agree when both are known; an unlabelled torch file is taken for `DEFAULT_ARCH`; an ONNX file without
    metadata stays None (its graph is the model).
    """
    if requested is not None and found is not None and found != requested:
        raise CheckpointError(f"{path}: holds a {found} model but {requested!r} was requested")
    arch = found or requested
    if arch is None and path.suffix != ".onnx":
        arch = DEFAULT_ARCH
    return arch


def load_network(path: Path, arch: str, *, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Build `arch` and load the torch weights at `path` -> (model in eval mode, metadata).

    p3m checkpoints carry their construction arguments in the sidecar; for other files (e.g. a published `.pth`)
    they are guessed from the tensors (`guess_arch`, e.g. the R34 width).
    """
    from p3m.models.checkpoint import load_model  # building a network is where torch is needed

    guessed = {} if sidecar_path(path).is_file() else guess_arch(path)[1]
    return load_model(path, arch=arch, arch_kwargs=guessed or None, device=device)
