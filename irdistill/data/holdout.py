"""A fixed development split carved out of a training split: every choice is made on it, the
test split is read once, by the final tables.

A query belongs to the dev part when a salted BLAKE2b hash of its id, read as a number in
``[0, 1)``, falls below :data:`DEV_FRACTION`. The rule needs nothing but the id: it does not
depend on the order or number of queries in the file, on the machine or on a random generator,
so the same query is dev everywhere (a sharded job, a later sitting, another library that copies
the rule). The two parts are addressed as splits of their own:

- ``<split>:dev``: the dev queries of ``<split>`` and their judgements (SciFact train: 156 of 809);
- ``<split>:fit``: the rest, which a model trains on while a choice is being made on dev.

``load_collection("beir/scifact", split="train:dev")`` (or ``beir/scifact/train:dev``) loads
one; both keep the whole corpus. A final model trains on the whole ``train`` split with the
settings chosen on dev.

Example:
    >>> is_dev("1"), is_dev("3")
    (False, True)
    >>> sorted(part_of(["0", "1", "2", "3"], "dev"))
    ['3']
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from irdistill.data.collection import Collection
from irdistill.data.spec import parse_dataset_spec
from irdistill.errors import InputError

__all__ = [
    "DEV_FRACTION",
    "DEV_SALT",
    "PARTS",
    "check_selection_split",
    "is_dev",
    "part_of",
    "split_part",
    "take_part",
]

DEV_FRACTION = 0.2
"""Share of a split's queries that the hash rule puts in dev."""

DEV_SALT = b"irdistill-dev-v1"
"""Salt of the hash; changing it is a different split (and a different ``chosen_on``)."""

PARTS = ("dev", "fit")
"""The parts a split name may end in, after a colon."""


def is_dev(query_id: str, fraction: float = DEV_FRACTION) -> bool:
    """Whether ``query_id`` is in the dev part: ``blake2b(salt, id)`` as a fraction ``< fraction``."""
    digest = hashlib.blake2b(query_id.encode(), digest_size=8, key=DEV_SALT).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


def part_of(query_ids: Iterable[str], part: str) -> list[str]:
    """The ids of ``query_ids`` in ``part`` (``"dev"`` or ``"fit"``), in their order."""
    if part not in PARTS:
        raise InputError(f"unknown part {part!r} of a split; known: {', '.join(PARTS)}")
    want_dev = part == "dev"
    return [q for q in query_ids if is_dev(q) == want_dev]


def split_part(split: str | None) -> tuple[str | None, str | None]:
    """``"train:dev"`` -> ``("train", "dev")``; a split without a part -> ``(split, None)``."""
    if split is None or ":" not in split:
        return split, None
    base, _, part = split.rpartition(":")
    if not base or part not in PARTS:
        raise InputError(
            f"split {split!r}: a part of a split is written <split>:dev or <split>:fit (the fixed dev "
            "split of irdistill.data.holdout)"
        )
    return base, part


def take_part(collection: Collection, part: str) -> Collection:
    """``collection`` with only the queries (and judgements) of ``part``; the corpus object is
    shared, not copied (a memory-mapped store stays one)."""
    qids = part_of(collection.query_ids, part)
    if not qids:
        raise InputError(f"{collection.label}: no query falls in its {part} part")
    return collection.with_queries(qids, f"{collection.split}:{part}" if collection.split else part)


def _dataset_and_split(dataset: str, split: str | None, default: str | None) -> tuple[str, str | None]:
    path = Path(dataset).expanduser()
    if path.exists():
        return str(path.resolve()), split or default
    base, named = parse_dataset_spec(dataset, split)
    return base, named or default


def check_selection_split(
    eval_dataset: str,
    eval_split: str | None,
    *,
    train: tuple[str, str] | None = None,
    evaluated: tuple[str, str] | None = None,
    where: str = "train",
) -> None:
    """Refuse a best-checkpoint evaluation that would choose on the wrong queries.

    ``eval_dataset`` / ``eval_split``: the collection the checkpoints are compared on; its split
    must be named (in ``eval_split`` or the name, ``beir/scifact/train:dev``), since a BEIR
    folder's default split is ``test``. ``train``: the (dataset, split) trained on: a selection
    split that is, or lies inside, the training split is refused (``train`` with ``train:dev``;
    train on ``train:fit`` instead). ``evaluated``: the (dataset, split) a recipe reports on:
    choosing there is choosing on the test split, refused.
    """
    name, split = _dataset_and_split(eval_dataset, eval_split, None)
    if split is None:
        raise InputError(
            f"{where}: eval_dataset {eval_dataset!r} needs an explicit eval_split (a BEIR folder's default "
            "split is test): choose checkpoints on a dev split, e.g. eval_split: train:dev while training "
            "on split train:fit"
        )
    if evaluated is not None and (name, split) == _dataset_and_split(*evaluated, None):
        raise InputError(
            f"{where}: eval_dataset {name}/{split} is the split this recipe reports on; choosing the best "
            "checkpoint there reads the test queries: use a dev split (train:dev, training on train:fit)"
        )
    if train is not None:
        train_name, train_split = _dataset_and_split(*train, "train")
        base, _ = split_part(split)
        train_base, train_part = split_part(train_split)
        if train_name == name and base == train_base and (split == train_split or train_part is None):
            raise InputError(
                f"{where}: eval split {split!r} holds queries the student trains on (split {train_split!r}); "
                f"train on {base}:fit to choose checkpoints on {base}:dev"
            )
