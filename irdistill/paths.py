"""Where data sets, models and caches are found.

Resolution order for a data set name such as ``beir/scifact``:

1. an explicit path to a folder;
2. ``$IRDISTILL_DATA/<name>`` (``scifact`` for ``beir/scifact``) if that folder exists;
3. ir_datasets (which downloads on first use).

Models resolve the same way: a path, then ``$IRDISTILL_MODELS/<name>`` (``all-MiniLM-L6-v2``
for ``sentence-transformers/all-MiniLM-L6-v2``; ``$IRDISTILL_MODELS`` defaults to
``~/.cache/irdistill/models``, the folder ``shared/models/prepare.sh`` fills), then the
Hugging Face hub name unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_HOME = Path("~/.cache/irdistill")


def irdistill_home() -> Path:
    """Root of irdistill's caches (``$IRDISTILL_HOME``, default ``~/.cache/irdistill``)."""
    return Path(os.environ.get("IRDISTILL_HOME", str(DEFAULT_HOME))).expanduser()


def models_dir() -> Path:
    """Local model folder (``$IRDISTILL_MODELS``, default ``~/.cache/irdistill/models``)."""
    env = os.environ.get("IRDISTILL_MODELS")
    return Path(env).expanduser() if env else irdistill_home() / "models"


def data_dir() -> Path | None:
    """Local data folder (``$IRDISTILL_DATA``) or ``None`` when unset."""
    env = os.environ.get("IRDISTILL_DATA")
    return Path(env).expanduser() if env else None


def cache_dir() -> Path:
    """Embedding and score caches (``$IRDISTILL_CACHE``, default ``~/.cache/irdistill/cache``)."""
    env = os.environ.get("IRDISTILL_CACHE")
    return Path(env).expanduser() if env else irdistill_home() / "cache"


def resolve_model(name: str | os.PathLike[str]) -> str:
    """Return a local folder for ``name`` when one exists, else ``name`` for the hub."""
    text = str(name)
    path = Path(text).expanduser()
    if path.exists():
        return str(path)
    local = models_dir() / text.rstrip("/").split("/")[-1]
    if local.is_dir():
        logger.info("model %s found locally at %s", text, local)
        return str(local)
    return text


def check_model(name: str | os.PathLike[str], *, what: str = "model") -> str:
    """Resolve ``name`` as :func:`resolve_model` does and fail now if it cannot be loaded later.

    Cheap: looks at the file system (and the Hugging Face cache when offline), loads nothing.
    A local folder must hold a model (``config.json``, ``modules.json`` or a ``.gguf`` file); a
    name that is clearly a path (absolute, ``./``, ``~``, several ``/``, or its first part is an
    existing folder) must exist; a hub id is accepted online and, with ``HF_HUB_OFFLINE`` set,
    only when the hub cache holds it.
    """
    from irdistill.errors import InputError

    text = str(name)
    resolved = resolve_model(text)
    path = Path(resolved)
    if path.is_dir():
        markers = ("config.json", "modules.json", "config_sentence_transformers.json")
        if not any((path / m).is_file() for m in markers) and not any(path.glob("*.gguf")):
            raise InputError(f"{what} {text!r}: {path} is not a model folder (no config.json or modules.json)")
        return resolved
    if path.is_file():
        return resolved
    parts = [p for p in text.split("/") if p]
    if text.startswith(("/", ".", "~")) or len(parts) > 2 or (len(parts) > 1 and Path(parts[0]).is_dir()):
        raise InputError(f"{what} {text!r}: no such model folder")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        from huggingface_hub import try_to_load_from_cache

        if not any(isinstance(try_to_load_from_cache(text, f), str) for f in ("config.json", "modules.json")):
            raise InputError(
                f"{what} {text!r}: not found locally (no {models_dir() / parts[-1]}) "
                "and HF_HUB_OFFLINE is set, so the hub is not asked; set "
                "IRDISTILL_MODELS or give a folder"
            )
    return resolved


def model_fingerprint(name_or_path: str) -> str:
    """A stable identity for a model: its files' names, sizes and mtimes, or its hub name (the
    embedding cache and the exported-backend cache are keyed by it)."""
    path = Path(name_or_path)
    digest = hashlib.sha256()
    if path.is_dir():
        digest.update(str(path.resolve()).encode())
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(f"{file.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    else:
        digest.update(f"hub:{name_or_path}".encode())
    return digest.hexdigest()[:16]


def local_dataset_dir(name: str) -> Path | None:
    """``$IRDISTILL_DATA/<last part of the name>`` when it exists, else ``None``."""
    root = data_dir()
    if root is None:
        return None
    candidate = root / name.rstrip("/").split("/")[-1]
    return candidate if candidate.is_dir() else None


def _umask() -> int:
    mask = os.umask(0o022)  # the only portable way to read it is to set it and set it back
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The mode ``open()`` / ``mkdir()`` would give a new file (0o666) or folder (0o777) under
    the user's umask. ``tempfile`` creates 0o600 / 0o700 on purpose, and a rename keeps that,
    so outputs staged through it get this mode before they are published."""
    return (0o777 if directory else 0o666) & ~_umask()


def staging_dir(target: str | os.PathLike[str]) -> Path:
    """A new hidden folder beside ``target`` (same file system, so it can be renamed onto it),
    with the mode an ordinary ``mkdir`` would give it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, default_mode(directory=True))
    return tmp


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    Readers never see a half-written file, and a failure leaves no partial output behind.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, default_mode())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file, then rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def update_json_table(path: str | os.PathLike[str], key: str, row: Any) -> dict[str, Any]:
    """Set ``table[key] = row`` in the JSON object at ``path`` (created if missing), atomically.

    The file is read again just before the write, so rows that another process added since this
    one started are kept. Returns the table as written.
    """
    path = Path(path)
    table = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    table[key] = row
    write_text_atomic(path, json.dumps(table, indent=2) + "\n")
    return table


def save_model_atomic(model: Any, target: str | os.PathLike[str], extra_files: dict[str, str] | None = None) -> Path:
    """Save a sentence-transformers model (bi-encoder, CrossEncoder, SparseEncoder) to ``target``.

    The model (and ``extra_files``, name -> text, written beside it) goes to a temporary
    sibling folder that is swapped in only when complete, so a crash leaves either the previous
    folder or the new one, never a half-written model or a model without its extra files.
    """
    target = Path(target)
    tmp = staging_dir(target)
    try:
        model.save_pretrained(str(tmp))
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
