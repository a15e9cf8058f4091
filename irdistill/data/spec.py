"""Data set names: ``beir/scifact/test`` split into the collection and its split."""

from __future__ import annotations

from irdistill.errors import InputError

__all__ = ["parse_dataset_spec"]


def parse_dataset_spec(spec: str, split: str | None = None) -> tuple[str, str | None]:
    """Split ``beir/scifact/test`` into (``beir/scifact``, ``test``).

    ``split`` given explicitly wins over a split in the spec. Names outside ``beir/`` keep
    everything after their first part as the split (``msmarco-passage/dev/small`` ->
    (``msmarco-passage``, ``dev/small``)).
    """
    parts = [p for p in spec.strip("/").split("/") if p]
    if not parts:
        raise InputError("empty data set name")
    head = 2 if parts[0] == "beir" and len(parts) >= 2 else 1
    base, rest = "/".join(parts[:head]), "/".join(parts[head:])
    return base, split or rest or None
