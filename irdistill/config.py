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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from irdistill.data.lines import read_text
from irdistill.errors import InputError

__all__ = ["add_config_arguments", "build_config", "config_from", "load_yaml", "option"]

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


# ---------------------------------------------------------------------------------------------
# command-line flags from the same dataclasses


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    default_factory: Any = dataclasses.MISSING,
    flag: str | None = None,
    short: str | None = None,
    negate: str | None = None,
    choices: Sequence[str] | None = None,
    parse: str | None = None,
    group: str | None = None,
    default_text: str | None = None,
    cli: bool = True,
) -> Any:
    """A config field and its command-line flag, declared once.

    Args:
        help: the flag's help (the default is appended unless ``default_text`` says otherwise).
        flag: the flag's name (default ``--`` + the field name with dashes).
        short: a short alias (``-k``).
        negate: for a field that defaults to true, the flag that sets it false (``--no-cache``).
        choices: allowed values.
        parse: ``"comma"`` (a comma-separated list), ``"key=value"`` (a repeatable
            ``KEY=VALUE`` building a dict), ``"nargs"`` (one or more values).
        group: the help section the flag is listed under.
        default_text: what the help says about the default (``""`` says nothing).
        cli: ``False`` for a key that only recipes set.
    """
    metadata = {
        "help": help,
        "flag": flag,
        "short": short,
        "negate": negate,
        "choices": choices,
        "parse": parse,
        "group": group,
        "default_text": default_text,
        "cli": cli,
    }
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _key_value(text: str) -> tuple[str, Any]:
    import argparse

    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), yaml.safe_load(value)


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _default_text(f: dataclasses.Field[Any]) -> str:
    given = f.metadata.get("default_text")
    if given is not None:
        return f" (default {given})" if given else ""
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
    elif f.default is not dataclasses.MISSING:
        value = f.default
    else:
        return ""
    if value is None or value == "" or isinstance(value, bool) or value == {} or value == []:
        return ""
    if isinstance(value, list):
        value = ",".join(map(str, value))
    return f" (default {value})"


def add_config_arguments(parser: Any, cls: type, *, skip: Sequence[str] = ()) -> None:
    """Add one flag per field of the config dataclass ``cls`` that has :func:`option` metadata.

    Every flag defaults to ``None`` (not given), so :func:`config_from` lays only the flags a user
    gave over the YAML recipe; types come from the field's annotation.
    """
    hints = typing.get_type_hints(cls)
    groups: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if "help" not in meta or not meta.get("cli", True) or f.name in skip:
            continue
        target = parser
        if meta.get("group"):
            target = groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        names = [meta.get("short")] if meta.get("short") else []
        names.append(meta.get("flag") or "--" + f.name.replace("_", "-"))
        hint = hints[f.name]
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        base = typing.get_origin(hint) or hint
        if base in (typing.Union, types.UnionType):
            base = typing.get_origin(inner[0]) or inner[0]
        kwargs: dict[str, Any] = {"dest": f.name, "help": meta["help"] + _default_text(f)}
        if meta.get("negate"):
            target.add_argument(meta["negate"], action="store_const", const=False, **kwargs)
            continue
        if base is bool:
            kwargs.update(action="store_const", const=True)
        elif meta.get("parse") == "comma":
            kwargs.update(type=_comma_list, metavar="A,B,...")
        elif meta.get("parse") == "key=value":
            kwargs.update(type=_key_value, action="append", metavar="KEY=VALUE")
        elif meta.get("parse") == "nargs":
            kwargs.update(nargs="+")
        elif base in (int, float):
            kwargs.update(type=base)
        if meta.get("choices"):
            kwargs["choices"] = list(meta["choices"])
        target.add_argument(*names, **kwargs)
