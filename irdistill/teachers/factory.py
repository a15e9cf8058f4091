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
from pathlib import Path
from typing import Any

from irdistill.data.collection import Collection
from irdistill.errors import InputError
from irdistill.teachers.base import TEACHERS, Teacher


def teacher_names() -> list[str]:
    return TEACHERS.names()


def build_teacher(
    spec: str | os.PathLike[str] | dict[str, Any],
    collection: Collection | None = None,
    *,
    source: str = "teacher spec",
    show_progress_bar: bool | None = None,
) -> Teacher:
    """A teacher from a registered name (``bm25``), a recipe file (``teachers/x.yaml``) or a dict.

    ``show_progress_bar`` is passed to every teacher (and ensemble member) that does long work
    when it is built (``progress_on_setup``: encoding or indexing the corpus) and whose recipe
    does not set it, so that work shows its progress.
    """
    values, source = _spec_values(spec, source)
    return _from_dict(values, collection, source, show_progress_bar)


def _spec_values(spec: str | os.PathLike[str] | dict[str, Any], source: str) -> tuple[dict[str, Any], str]:
    if isinstance(spec, dict):
        return dict(spec), source
    text = str(spec)
    if text.endswith((".yaml", ".yml")) or Path(text).is_file():
        from irdistill.config import load_yaml

        return load_yaml(text), text
    return {"teacher": text}, source


def check_teacher(spec: str | os.PathLike[str] | dict[str, Any], *, source: str = "teacher spec") -> None:
    """Check a teacher spec without building it: names, keys, model folders, optional packages.

    Cheap (no model is loaded, no text encoded), so commands call it before any work.
    """
    from irdistill.dependencies import require
    from irdistill.paths import check_model

    values, source = _spec_values(spec, source)
    name, cls, values = _resolve(values, source)
    if name == "ensemble":
        members = values.get("teachers")
        for i, member in enumerate(members or []):
            check_teacher(member, source=f"{source}: member {i + 1}")
        return
    if isinstance(values.get("model"), str):
        check_model(values["model"], what=f"{source}: teacher {name} model")
    if "backend" in values:
        from irdistill.backends import check_backend

        check_backend(values["backend"], what=f"{source}: teacher {name} backend")
    if name == "listwise-llm" and (values.get("gguf_file") or _holds_gguf(values.get("model"))):
        require("gguf", "accelerate", purpose=f"{source}: the GGUF listwise teacher")


def _holds_gguf(model: Any) -> bool:
    from irdistill.paths import resolve_model

    if not isinstance(model, str):
        return False
    path = Path(resolve_model(model))
    return path.suffix == ".gguf" or (path.is_dir() and any(path.glob("*.gguf")))


def _resolve(values: dict[str, Any], source: str) -> tuple[str, type[Teacher], dict[str, Any]]:
    """The registered name, its class and the recipe's keyword arguments, checked against it."""
    values = dict(values)
    name = values.pop("teacher", None)
    if not isinstance(name, str):
        raise InputError(f"{source}: missing 'teacher' (one of {', '.join(TEACHERS.names())})")
    cls = TEACHERS.get(name)
    if name == "ensemble":
        members = values.pop("members", None)
        if not isinstance(members, list) or len(members) < 2:
            raise InputError(f"{source}: an ensemble needs 'members', a list of at least two teacher specs")
        values["teachers"] = members
    params = inspect.signature(cls.__init__).parameters
    allowed = [p for p in params if p not in ("self", "collection")]
    for key in values:
        if key not in allowed:
            raise InputError(f"{source}: teacher {name} takes no key {key!r}; allowed: {', '.join(allowed)}")
    required = [
        p
        for p, v in params.items()
        if v.default is inspect.Parameter.empty
        and v.kind is v.POSITIONAL_OR_KEYWORD
        and p not in ("self", "collection")
        and p not in values
    ]
    if required:
        raise InputError(f"{source}: teacher {name} needs {', '.join(required)}")
    return name, cls, values


def _from_dict(
    values: dict[str, Any], collection: Collection | None, source: str, show_progress_bar: bool | None = None
) -> Teacher:
    name, cls, values = _resolve(values, source)
    if name == "ensemble":
        values["teachers"] = [
            build_teacher(m, collection, source=f"{source}: member {i + 1}", show_progress_bar=show_progress_bar)
            for i, m in enumerate(values["teachers"])
        ]
    params = inspect.signature(cls.__init__).parameters
    if show_progress_bar is not None and getattr(cls, "progress_on_setup", False):
        values.setdefault("show_progress_bar", show_progress_bar)
    if "collection" in params:
        if collection is None:
            raise InputError(f"{source}: teacher {name} needs the collection")
        values["collection"] = collection
    return cls(**values)
