"""Build a teacher from a name, a YAML recipe file or a dict, for recipes and the CLI.

A recipe names the registered teacher and its keyword arguments::

    # teachers/ce_minilm.yaml
    teacher: cross-encoder
    model: runs/teacher-ce
    batch_size: 64

    # teachers/ensemble_bm25_mpnet.yaml
    teacher: ensemble
    normalization: minmax
    weights: [0.5, 0.5]
    members:
      - {teacher: bm25}
      - {teacher: dense, model: sentence-transformers/all-mpnet-base-v2}

Teachers that need the collection (``bm25``; ``dense`` for its cached corpus embeddings) get
it injected. Unknown teacher names and unknown keys are errors that list what is allowed.
"""

from __future__ import annotations

import inspect
import os
from importlib import import_module
from pathlib import Path
from typing import Any

from irdistill.data.collection import Collection
from irdistill.errors import InputError
from irdistill.teachers.base import TEACHERS, Teacher

_MODULES = ("cross_encoder", "dense", "sparse", "bm25", "ensemble", "listwise_llm")


def _register_all() -> None:
    for name in _MODULES:
        import_module(f"irdistill.teachers.{name}")


def teacher_names() -> list[str]:
    _register_all()
    return TEACHERS.names()


def build_teacher(spec: str | os.PathLike[str] | dict[str, Any], collection: Collection | None = None,
                  *, source: str = "teacher spec") -> Teacher:
    """A teacher from a registered name (``bm25``), a recipe file (``teachers/x.yaml``) or a dict."""
    _register_all()
    if isinstance(spec, dict):
        return _from_dict(dict(spec), collection, source)
    text = str(spec)
    if text.endswith((".yaml", ".yml")) or Path(text).is_file():
        from irdistill.cli.config import load_yaml

        return _from_dict(load_yaml(text), collection, text)
    return _from_dict({"teacher": text}, collection, source)


def _from_dict(values: dict[str, Any], collection: Collection | None, source: str) -> Teacher:
    name = values.pop("teacher", None)
    if not isinstance(name, str):
        raise InputError(f"{source}: missing 'teacher' (one of {', '.join(TEACHERS.names())})")
    cls = TEACHERS.get(name)
    if name == "ensemble":
        members = values.pop("members", None)
        if not isinstance(members, list) or len(members) < 2:
            raise InputError(f"{source}: an ensemble needs 'members', a list of at least two teacher specs")
        values["teachers"] = [build_teacher(m, collection, source=f"{source}: member {i + 1}")
                              for i, m in enumerate(members)]
    params = inspect.signature(cls.__init__).parameters
    allowed = [p for p in params if p not in ("self", "collection")]
    for key in values:
        if key not in allowed:
            raise InputError(f"{source}: teacher {name} takes no key {key!r}; allowed: {', '.join(allowed)}")
    if "collection" in params:
        if collection is None:
            raise InputError(f"{source}: teacher {name} needs the collection")
        values["collection"] = collection
    required = [p for p, v in params.items() if v.default is inspect.Parameter.empty
                and v.kind is v.POSITIONAL_OR_KEYWORD and p not in ("self",) and p not in values]
    if required:
        raise InputError(f"{source}: teacher {name} needs {', '.join(required)}")
    return cls(**values)
