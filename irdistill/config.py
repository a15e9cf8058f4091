"""Recipes: dataclass configs loaded from YAML, checked key by key, overridden by flags.

A recipe file holds the keys of one config dataclass (underscores, not dashes)::

    # eval/recipes/minilm_scifact.yaml
    model: sentence-transformers/all-MiniLM-L6-v2
    dataset: beir/scifact/test
    index: hnsw
    index_params: {m: 32, ef_search: 256}

:func:`build_config` makes the dataclass from a dict, refusing unknown keys (the error lists the
allowed ones) and values of the wrong type; :func:`config_from` lays the flags a user gave over a
YAML file. Library code (teacher recipes, the training driver, the ``run`` pipeline) and the CLI
share these functions; nothing here imports the CLI.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from irdistill.data.lines import read_text
from irdistill.errors import InputError

__all__ = ["build_config", "config_from", "load_yaml"]

C = TypeVar("C")


def _check_type(cls: type, name: str, value: Any, hint: Any, source: str) -> Any:
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(cls, name, value, inner[0], source)
    expected = origin or hint
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, bool):
        raise InputError(f"{source}: {name} must be an integer, got {value!r}")
    if isinstance(expected, type) and not isinstance(value, expected):
        raise InputError(f"{source}: {name} must be {expected.__name__}, got {type(value).__name__} {value!r}")
    return value


def build_config(cls: type[C], values: dict[str, Any], source: str = "config") -> C:
    """Make ``cls`` from a dict, naming any unknown key and the allowed keys."""
    hints = typing.get_type_hints(cls)
    allowed = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for key in values:
        if key not in allowed:
            raise InputError(f"{source}: unknown key {key!r}; allowed: {', '.join(allowed)}")
    checked = {k: _check_type(cls, k, v, hints[k], source) for k, v in values.items()}
    return cls(**checked)


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such config file")
    try:
        data = yaml.safe_load(read_text(p))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        raise InputError(f"{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{p}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def config_from(cls: type[C], yaml_path: str | None, overrides: dict[str, Any]) -> C:
    """YAML values (if any), then the flags the user actually gave."""
    values = load_yaml(yaml_path) if yaml_path else {}
    given = {k: v for k, v in overrides.items() if v is not None}
    if yaml_path:
        build_config(cls, values, source=yaml_path)  # errors in the file name the file
    build_config(cls, given, source="command line")
    return build_config(cls, {**values, **given}, source=yaml_path or "command line")
