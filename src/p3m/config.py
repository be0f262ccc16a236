"""Typed configurations: dataclass trees read from YAML files, built-in recipes or mappings, with ``--set`` overrides.

A configuration is a tree of dataclasses (`p3m.train.config.TrainConfig`, `p3m.bench.config.BenchmarkConfig`).
`load` reads it the same way for every kind:

1. the source: a mapping, a YAML file, or the name of a built-in recipe (a YAML file shipped inside the package,
   under ``p3m/configs/<kind>/<name>.yaml``; `list_recipes` names them);
2. ``section.key=value`` overrides (values parsed as YAML), applied to the mapping;
3. `build`: missing keys take the defaults; unknown keys and values of the wrong type are problems;
4. the root's ``problems()`` adds the semantic ones (ranges, choices, combinations).

Every problem found is raised together, as one line. A section (a nested dataclass, a list of them, or a free
mapping) given as null takes its default, as an empty YAML section (``model:``) reads as null.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import reprlib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, Union

import yaml

from p3m.errors import ConfigError

__all__ = [
    "apply_overrides",
    "build",
    "check_choice",
    "describe_recipes",
    "list_recipes",
    "load",
    "read_yaml",
    "recipe_path",
    "recipe_summary",
    "resolve_source",
]

#: the built-in recipes: ``<kind>/<name>.yaml`` (kinds: "train", "benchmark")
RECIPE_DIR = Path(__file__).resolve().parent / "configs"
_YAML_SUFFIXES = (".yaml", ".yml")

T = TypeVar("T")


class _Checked(Protocol):
    def problems(self) -> list[str]: ...


# ------------------------------------------------------------------------------------------- recipes


def list_recipes(kind: str) -> list[str]:
    """Names of the built-in recipes of one kind ("train" or "benchmark"), sorted."""
    return sorted(p.stem for p in (RECIPE_DIR / kind).glob("*.yaml"))


def recipe_path(kind: str, name: str) -> Path:
    """The YAML file of built-in recipe ``name``; ConfigError naming the recipes there are when it does not exist."""
    path = RECIPE_DIR / kind / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(list_recipes(kind)) or "none"
        raise ConfigError(
            f"no built-in {kind} recipe {name!r} (built-in: {known}); a config file is named by a path "
            "with a '/' or a .yaml suffix"
        )
    return path


def recipe_summary(path: Path) -> str:
    """The first comment line of a recipe file, without the ``#``: what the recipe is for."""
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("#"):
                return line.lstrip("#").strip()
    except OSError:
        pass
    return ""


def describe_recipes(kind: str) -> list[str]:
    """One line per built-in recipe of ``kind``: its name and what it is for."""
    names = list_recipes(kind)
    width = max(map(len, names), default=0)
    return [f"{name:<{width}}  {recipe_summary(recipe_path(kind, name))}" for name in names]


def resolve_source(kind: str, source: str | os.PathLike[str]) -> Path:
    """A config file path, or the file of a built-in recipe.

    A name without a path separator and without a .yaml/.yml suffix (``demo``, ``p3m-r34``) is a built-in recipe;
    anything else is a path, relative to the working directory.
    """
    text = os.fspath(source)
    is_name = "/" not in text and os.sep not in text and not text.lower().endswith(_YAML_SUFFIXES)
    return recipe_path(kind, text) if is_name else Path(text).expanduser()


# ------------------------------------------------------------------------------------------- reading


def read_yaml(path: str | os.PathLike[str], error: type[Exception] = ConfigError) -> dict[str, Any]:
    """A YAML file holding a mapping (an empty file is an empty mapping); ``error`` with one line otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read config file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not a YAML config (not UTF-8 text)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{path}: invalid YAML ({exc})".replace("\n", " ")) from None
    except RecursionError:
        raise error(f"{path}: invalid YAML (nested too deeply)") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{path}: a config must be a mapping of sections")
    return data


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings (values parsed as YAML) to a nested mapping, in place."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc.__class__.__name__})") from None
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a section")
        node[parts[-1]] = value
    return data


# ------------------------------------------------------------------------------------------- building


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType)


def _list_item(hint: Any) -> Any:
    """The item type of ``list[X]`` (None for any other hint)."""
    return typing.get_args(hint)[0] if typing.get_origin(hint) is list else None


def _check_type(value: Any, hint: Any) -> bool:
    """True when ``value`` fits the (resolved) type hint; ints are accepted where floats are expected."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if _is_union(hint):
        return any(_check_type(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_check_type(v, item) for v in value)
    if origin is dict:
        key, item = typing.get_args(hint)
        return isinstance(value, dict) and all(_check_type(k, key) and _check_type(v, item) for k, v in value.items())
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _accepts_float(hint: Any) -> bool:
    return hint is float or float in typing.get_args(hint)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_section(hint: Any) -> bool:
    """A nested dataclass, a list of them, or a free mapping: null means "the default"."""
    item = _list_item(hint)
    return (
        dataclasses.is_dataclass(hint)
        or (item is not None and dataclasses.is_dataclass(item))
        or typing.get_origin(hint) is dict
    )


def _value(hint: Any, value: Any, path: str, problems: list[str]) -> tuple[bool, Any]:
    """(ok, converted value) of one key; a problem is appended when it does not fit."""
    item = _list_item(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            problems.append(f"{path} must be a mapping")
            return False, None
        return True, build(typing.cast(type, hint), value, problems, path + ".")
    if item is not None and dataclasses.is_dataclass(item):
        if not isinstance(value, list):
            problems.append(f"{path} must be a list of mappings")
            return False, None
        built: list[Any] = []
        for i, entry in enumerate(value):
            if not isinstance(entry, dict):
                problems.append(f"{path}[{i}] must be a mapping")
                continue
            built.append(build(typing.cast(type, item), entry, problems, f"{path}[{i}]."))
        return True, built
    if isinstance(value, str) and _accepts_float(hint) and _is_number(value):
        return True, float(value)  # PyYAML reads "1e-3" (no dot) as a string
    if _check_type(value, hint):
        return True, float(value) if hint is float else copy.deepcopy(value)
    problems.append(f"{path} has the wrong type: {shown(value)}")
    return False, None


_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxdict, _SHOWN.maxstring, _SHOWN.maxother = 3, 6, 6, 80, 80


def shown(value: Any) -> str:
    """A user's value in a message: its repr, cut short (a YAML file can hold a value whose full repr is
    gigabytes, e.g. nested aliases)."""
    return _SHOWN.repr(value)


def build(cls: type[T], data: Mapping[str, Any], problems: list[str], prefix: str = "") -> T:
    """An instance of dataclass ``cls`` from a mapping: missing keys take their defaults; an unknown key or a value
    of the wrong type is appended to ``problems`` (``prefix`` + key names it) and left at its default."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(typing.cast(Any, cls))]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in names:
            problems.append(f"unknown key {path!r} (valid: {', '.join(sorted(names))})")
            continue
        hint = hints[key]
        if value is None and _is_section(hint):
            continue
        ok, converted = _value(hint, value, path, problems)
        if ok:
            kwargs[key] = converted
    return cls(**kwargs)


def check_choice(problems: list[str], key: str, value: Any, allowed: Sequence[str]) -> None:
    """Append ``<key> must be one of <allowed>, got <value>`` to ``problems`` when ``value`` is not allowed."""
    if value not in allowed:
        problems.append(f"{key} must be one of {', '.join(allowed)}, got {shown(value)}")


def load(
    cls: type[T],
    source: Mapping[str, Any] | str | os.PathLike[str] | None,
    overrides: Sequence[str] = (),
    *,
    kind: str,
    label: str,
    error: type[Exception] = ConfigError,
) -> tuple[T, Path | None]:
    """Build and check a ``cls`` config from ``source`` (a mapping, a YAML path or a built-in recipe name of
    ``kind``; None for the defaults) and ``overrides``. Returns (config, the file read or None).

    Raises ``error`` (a P3MError) with one line ``[<file>: ]invalid <label>: <problem>; <problem>; ...``.
    """
    path: Path | None = None
    if source is None:
        data: dict[str, Any] = {}
    elif isinstance(source, Mapping):
        data = copy.deepcopy(dict(source))
    else:
        try:
            path = resolve_source(kind, source)
        except ConfigError as exc:
            raise error(str(exc)) from None
        data = read_yaml(path, error)
    try:
        apply_overrides(data, overrides)
    except ConfigError as exc:
        raise error(str(exc)) from None
    problems: list[str] = []
    config = build(cls, data, problems)
    problems += typing.cast(_Checked, config).problems()
    if problems:
        where = f"{path}: " if path is not None else ""
        raise error(f"{where}invalid {label}: " + "; ".join(dict.fromkeys(problems)))
    return config, path
