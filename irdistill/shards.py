"""Resumable sharded jobs: the folder protocol the teacher-score store and the query generation share.

A job folder holds ``manifest.json`` (a format version, the job's ``fingerprint``, ``num_chunks`` and
``chunk_rows``), one ``shard-00000.parquet`` per finished chunk, written through a temporary file and
an atomic rename (so a shard that exists is complete, even after SIGKILL), and the merged file rank 0
writes once every shard exists. Chunk ``i`` belongs to rank ``i % world_size`` (``torchrun``'s
``RANK`` / ``WORLD_SIZE``). A folder is resumed only by the job whose fingerprint it holds.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from irdistill.errors import InputError
from irdistill.paths import write_text_atomic

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
_TEMP_SHARD = re.compile(r"^\.shard-(\d+)\.parquet\..*\.tmp$")


def shard_name(chunk: int) -> str:
    """File name of chunk ``chunk``'s shard: ``shard-00000.parquet``."""
    return f"shard-{chunk:05d}.parquet"


def rank_and_world_size(rank: int | None, world_size: int | None) -> tuple[int, int]:
    def from_env(var: str, default: int) -> int:
        value = os.environ.get(var)
        if value is None or not value.strip():
            return default
        try:
            return int(value)
        except ValueError:
            raise InputError(f"environment variable {var}={value!r} is not an integer") from None

    rank = from_env("RANK", 0) if rank is None else rank
    world_size = from_env("WORLD_SIZE", 1) if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise InputError(f"rank {rank} / world_size {world_size}: expected 0 <= rank < world_size")
    return rank, world_size


def read_manifest(path: Path, format_version: int, what: str = "job") -> dict[str, Any]:
    """A job's manifest, checked: the keys every job has, and the folder layout's version."""
    if not path.is_file():
        raise InputError(f"{path}: no such file; is {path.parent} a {what} folder irdistill wrote?")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not a valid manifest ({err})") from None
    needed = ("format_version", "fingerprint", "num_chunks", "chunk_rows")
    if not isinstance(manifest, dict) or any(key not in manifest for key in needed):
        raise InputError(f"{path}: not a {what} manifest (expected keys {', '.join(needed)})")
    if manifest["format_version"] != format_version:
        raise InputError(
            f"{path}: written in store format {manifest['format_version']}, this "
            f"irdistill reads format {format_version}; use a new output folder"
        )
    return manifest


def open_job(
    out: Path,
    manifest: dict[str, Any],
    *,
    merged: str,
    what: str,
    differences: Callable[[Mapping[str, Any], Mapping[str, Any]], str],
) -> bool:
    """Write the manifest of a new job, or check that the folder holds this same job (the
    manifest's ``fingerprint``); ``merged`` names the job's final file, ``what`` its contents and
    ``differences(old, new)`` says how two manifests differ.

    Returns ``True`` when the folder already holds this job's merged file: the job is finished,
    with or without its shards (a store copied as its manifest and merged file alone, as
    ``eval/teacher_scores`` keeps them, is not done again)."""
    path = out / MANIFEST_NAME
    if not path.exists():
        leftovers = sorted(p.name for p in out.glob("shard-*.parquet")) + ([merged] if (out / merged).exists() else [])
        # another rank may have written the manifest (always before its first shard) meanwhile
        if leftovers and not path.exists():
            raise InputError(
                f"{out} holds {leftovers[0]} but no {MANIFEST_NAME}, so it cannot "
                "be resumed; use a new output folder, or overwrite=True"
            )
        if not path.exists():
            write_text_atomic(path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    old = read_manifest(path, manifest["format_version"], what)
    if old["fingerprint"] != manifest["fingerprint"]:
        raise InputError(
            f"{out} holds {what} of a different job ({differences(old, manifest)}); "
            f"use a new output folder, or overwrite=True to discard the {what} there"
        )
    return (out / merged).exists()


def missing_shards(out: Path, count: int) -> list[int]:
    """Chunks whose shard is not written yet."""
    return [i for i in range(count) if not (out / shard_name(i)).exists()]


def remove_stale_temp_files(out: Path, rank: int, world_size: int, merged: str) -> None:
    """Delete temporary files a killed run left behind (this rank's shards; rank 0: the merged file)."""
    stale = []
    for path in out.glob(".*.tmp"):
        match = _TEMP_SHARD.match(path.name)
        if match and int(match.group(1)) % world_size == rank:
            stale.append(path)
        elif rank == 0 and path.name.startswith(f".{merged}."):
            stale.append(path)
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        logger.info("%s: removed %d temporary files of an interrupted run", out, len(stale))


def clear(out: Path, merged: str) -> None:
    """Remove a job's manifest, shards, merged file and temporary files (other files stay)."""
    if not out.is_dir():
        return
    paths = [
        *out.glob("shard-*.parquet"),
        *out.glob(".shard-*.tmp"),
        *out.glob(f".{merged}.*.tmp"),
        *out.glob(f".{MANIFEST_NAME}.*.tmp"),
        out / merged,
        out / MANIFEST_NAME,
    ]
    removed = 0
    for path in paths:
        if path.is_file():
            path.unlink()
            removed += 1
    logger.info("overwrite: removed %d files from %s", removed, out)
