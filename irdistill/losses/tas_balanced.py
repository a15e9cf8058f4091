"""TAS-Balanced dual-teacher loss: pairwise Margin-MSE plus in-batch Margin-MSE (arXiv 2104.06967)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from sentence_transformers.base.losses.merged_forward import embed_columns
from sentence_transformers.base.model import BaseModel
from sentence_transformers.util import all_gather, all_gather_with_grad
from torch import Tensor, nn

from irdistill.errors import InputError
from irdistill.losses.base import (
    LOSSES,
    LossParts,
    Rows,
    SimilarityFn,
    check_columns,
    distributed_rank_and_world,
    matrix_similarity,
)
from irdistill.losses.margin_mse import MarginMSELoss

__all__ = [
    "FrozenBiEncoderTeacher",
    "InBatchTeacher",
    "TASBalancedLoss",
    "inbatch_margin_mse",
    "inbatch_teacher_scores",
]

InBatchTeacher = Callable[[list[dict[str, Any]]], list[Tensor]]
"""Tokenised columns ``[query, positive, negative_1, ...]`` -> one teacher embedding per column."""


class FrozenBiEncoderTeacher(nn.Module):
    """A frozen sentence-transformers bi-encoder as the in-batch teacher of :class:`TASBalancedLoss`.

    It embeds the very token ids the student gets, so it must share the student's tokenizer (for
    a teacher with another tokenizer, precompute its in-batch scores; see
    :func:`inbatch_teacher_scores`). It stays in eval mode and outside autograd whatever the
    trainer does to the loss module.

    Args:
        encoder: the teacher ``SentenceTransformer``.
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        # not named ``model``: the ST trainer swaps every child called ``model`` for the student
        self.encoder = encoder.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> FrozenBiEncoderTeacher:
        return super().train(False)

    @torch.no_grad()
    def forward(self, features: list[dict[str, Any]]) -> list[Tensor]:
        # shallow copies: ST modules write their outputs into the feature dict they are given
        return [self.encoder(dict(columns))["sentence_embedding"] for columns in features]


class _Diagonal:
    """Pairwise similarity ``s(a[i], b[i])`` read off a matrix similarity (for custom callables)."""

    def __init__(self, matrix_fn: SimilarityFn) -> None:
        self.matrix_fn = matrix_fn
        self.__name__ = f"diagonal({getattr(matrix_fn, '__name__', type(matrix_fn).__name__)})"

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.diagonal(self.matrix_fn(a, b))


def inbatch_margin_mse(
    query: Tensor,
    passages: Tensor,
    targets: Tensor,
    *,
    n_columns: int,
    offset: int = 0,
    similarity_fct: SimilarityFn | str = "dot",
) -> Tensor:
    """In-batch Margin-MSE of ``B`` local queries against all passages of a (global) batch.

    Args:
        query: ``(B, dim)`` student embeddings of the local queries.
        passages: ``(n_columns * G, dim)`` student embeddings of the batch's passages, column by
            column: the ``G`` positives, then the ``G`` first negatives, and so on (``G >= B`` is
            the global batch size; query ``i`` owns rows ``c * G + offset + i``).
        targets: ``(B, n_columns * G)`` in-batch teacher scores ``t(q_i, p_j)`` in the same order.
        n_columns: number of passage columns (``1 + n_neg``).
        offset: position of the first local query in the global batch (``rank * B`` under DDP).
        similarity_fct: student similarity, ``"dot"``, ``"cosine"`` or a matrix callable.

    Returns:
        ``mean_{i, j} ((s(q_i, p_i+) - s(q_i, p_j)) - (t(q_i, p_i+) - t(q_i, p_j)))^2`` over the
        local queries ``i`` and every passage ``j`` that belongs to another query; a zero that
        keeps the graph when the batch has a single query.
    """
    batch_size, global_size = int(query.size(0)), int(passages.size(0)) // n_columns
    scores = matrix_similarity(similarity_fct)(query, passages)  # (B, n_columns * G)
    targets = targets.detach().to(device=scores.device, dtype=scores.dtype)
    rows = torch.arange(batch_size, device=scores.device)
    own = rows + offset
    student_margin = scores[rows, own].unsqueeze(1) - scores
    teacher_margin = targets[rows, own].unsqueeze(1) - targets
    other = torch.ones(batch_size, n_columns, global_size, dtype=torch.bool, device=scores.device)
    other[rows.unsqueeze(1), torch.arange(n_columns, device=scores.device), own.unsqueeze(1)] = False
    other = other.reshape(batch_size, n_columns * global_size)
    if not bool(other.any()):
        return scores.sum() * 0.0
    return (student_margin - teacher_margin)[other].pow(2).mean()


def inbatch_teacher_scores(teacher: Any, queries: Sequence[str], columns: Sequence[Sequence[str]]) -> Tensor:
    """In-batch teacher scores in the layout :class:`TASBalancedLoss` takes as labels.

    For a trainer that scores each batch with a pointwise teacher over texts (for example
    :class:`irdistill.teachers.dense.DenseTeacher`, whose ``score(queries, passages)`` scores
    pairs): every query is scored against every passage of the batch.

    Args:
        teacher: any object with ``score(queries, passages) -> one float per pair``.
        queries: the ``B`` query texts of the (global) batch.
        columns: the passage columns ``[positives, negatives_1, ..., negatives_n]``, each ``B`` texts.

    Returns:
        ``(B, B * (1 + n))`` float32 tensor; entry ``[i, c * B + j]`` is ``t(query_i, columns[c][j])``.
        Under DDP give rank ``r`` the rows ``r * B_local : (r + 1) * B_local`` of the global batch's
        matrix.
    """
    passages = [p for column in columns for p in column]
    if any(len(column) != len(queries) for column in columns):
        raise InputError(
            f"every passage column must hold {len(queries)} texts, one per query, "
            f"got {[len(column) for column in columns]}"
        )
    pair_queries = [q for q in queries for _ in passages]
    scores = np.asarray(teacher.score(pair_queries, passages * len(queries)), dtype=np.float32)
    return torch.from_numpy(scores.reshape(len(queries), len(passages)))


@LOSSES.register("tas-balanced")
class TASBalancedLoss(nn.Module):
    """TAS-Balanced dual-teacher supervision: ``L = L_pair + α · L_inbatch``.

    ``L_pair`` is Margin-MSE (arXiv 2010.02666) on the stored, static teacher scores of each
    query's own (p+, p-) pairs (a cross-encoder ensemble in the paper)::

        L_pair = mean_{q, i} ((s(q, p+) - s(q, p-_i)) - (t_1(q, p+) - t_1(q, p-_i)))^2

    ``L_inbatch`` is Margin-MSE over the in-batch negatives, supervised by a second teacher
    ``t_2`` (ColBERT in the paper) that scores every query against every passage of the batch.
    Each query's positive is paired with every passage that belongs to another query (their
    positives and negatives; the query's own negatives are already in ``L_pair``)::

        L_inbatch = mean_{q in Q, p in P \\ P(q)} ((s(q, p+_q) - s(q, p)) - (t_2(q, p+_q) - t_2(q, p)))^2

    with ``P`` every passage of the batch and ``P(q)`` the passages of query ``q``. This is the
    reference code's in-batch term (matchmaker ``train.py``: off-diagonal positives and
    off-diagonal negatives, the two means averaged, which is the mean over all those pairs since
    both sets have the same size), generalised to several negative columns. ``α = 0.75`` as in the
    paper's reference configuration.

    The forward returns :class:`~irdistill.losses.base.LossParts` ``{"pair": L_pair,
    "inbatch": α · L_inbatch}``; the sentence-transformers trainer logs the two parts and
    optimises their sum, which is also ``parts.total``.

    **In-batch teacher scores** come from one of three places, first match wins:

    1. the labels: teacher scores packed after the pair labels (see the Inputs table and
       :meth:`pack_labels`), for a trainer that precomputes them (e.g. with
       :func:`inbatch_teacher_scores` and a :class:`~irdistill.teachers.dense.DenseTeacher`);
    2. ``teacher_embeddings`` given to :meth:`compute_loss_from_embeddings`: ``t_2`` is
       ``teacher_similarity_fct`` of the teacher's query and passage embeddings;
    3. ``inbatch_teacher`` given at construction: :meth:`forward` runs it on the batch's token ids
       (without gradients) to get those embeddings. A ``SentenceTransformer`` is wrapped in a
       :class:`FrozenBiEncoderTeacher`.

    **Distributed data parallel.** With ``gather_across_devices=True`` (default) and an
    initialised process group, every query is scored against the passages of the whole global
    batch (``G = B × world_size`` queries):

    - the student's passage embeddings are gathered with
      ``sentence_transformers.util.all_gather_with_grad`` (``torch.distributed.nn.all_gather``);
      its backward sums, on the rank that owns each passage, the gradients that every rank's
      loss sends to it;
    - the in-batch teacher scores must then cover the global batch: packed labels of rank ``r``
      are the rows ``r·B .. (r+1)·B`` of the global ``(G, G·(1+n))`` matrix, with passages ordered
      column by column, then by rank, then by row (the order of the gathered embeddings). With
      teacher embeddings, the teacher's passage embeddings are gathered (no gradient) instead;
    - each rank returns the mean over its own ``B`` queries, and ``L_pair`` stays local.

    No world-size factor is applied: DDP averages the per-rank gradients, and because the gather's
    backward already routes every rank's contribution to the passage's owner, that average is
    exactly the gradient of the global-batch loss (``mean`` over all ``G`` queries); multiplying
    by the world size would make it ``world_size`` times too large. (The factor is only right for
    gathers whose backward keeps just the local slice of the gradient, which is not what is used
    here.) The mean of the per-rank losses, which is what the trainer logs, equals the global
    loss. Every rank must hold the same number of queries (``DistributedSampler`` guarantees it).
    The tests check loss and gradients against a single process on the concatenated batch.

    Args:
        model: the student ``SentenceTransformer`` (or ``SparseEncoder``); ``None`` is allowed when
            only :meth:`compute_loss_from_embeddings` is used.
        alpha: weight ``α`` of the in-batch term.
        similarity_fct: student similarity: ``"dot"`` (default, as in the paper), ``"cosine"``, or
            a matrix callable ``(a, b) -> s(a[i], b[j])``.
        inbatch_teacher: optional on-the-fly in-batch teacher (see above).
        teacher_similarity_fct: how teacher embeddings are scored (``"dot"`` default, ``"cosine"``
            or a matrix callable).
        gather_across_devices: in-batch negatives from the global batch under DDP.

    References:
        Hofstätter et al., "Efficiently Teaching an Effective Dense Retriever with Balanced Topic
        Aware Sampling", SIGIR 2021, arXiv 2104.06967. Margin-MSE: arXiv 2010.02666.

    Inputs:
        ``P`` is the pair-label width, ``n`` (margins) or ``n + 1`` (raw scores), as in
        :class:`~irdistill.losses.margin_mse.MarginMSELoss`; ``G`` the global batch size.

        +------------------------------------------------+--------------------------------------------------------+
        | Inputs (columns)                               | Labels                                                 |
        +================================================+========================================================+
        | (query, positive, negative_1, ..., negative_n) | pair labels only, ``(batch,)`` (n = 1), ``(batch, n)`` |
        |                                                | or ``(batch, n + 1)``; in-batch teacher embeddings or  |
        |                                                | ``inbatch_teacher`` required                           |
        +------------------------------------------------+--------------------------------------------------------+
        | (query, positive, negative_1, ..., negative_n) | ``(batch, P + G * (1 + n))``: pair labels, then        |
        |                                                | ``t_2(q, p_j)`` for the ``G`` positives, the ``G``     |
        |                                                | first negatives, ...                                   |
        +------------------------------------------------+--------------------------------------------------------+

    Example:
        >>> import torch
        >>> from irdistill.losses import TASBalancedLoss
        >>> loss = TASBalancedLoss(model=None)  # the pure part needs no model
        >>> q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> pos = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
        >>> neg = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
        >>> inbatch = torch.tensor([[3.0, 1.0, 2.0, 2.0], [1.0, 2.0, 0.0, 0.0]])  # t_2(q_i, [p1, p2, n1, n2])
        >>> labels = TASBalancedLoss.pack_labels(torch.tensor([0.5, 1.0]), inbatch)
        >>> parts = loss.compute_loss_from_embeddings([q, pos, neg], labels)
        >>> {name: round(value.item(), 4) for name, value in parts.items()}, round(parts.total.item(), 4)
        ({'pair': 0.125, 'inbatch': 0.75}, 0.875)

        Training with a frozen bi-encoder as the in-batch teacher (same tokenizer as the student)::

            loss = TASBalancedLoss(student, inbatch_teacher=SentenceTransformer("teacher-dir"))
            trainer = SentenceTransformerTrainer(model=student, train_dataset=train_dataset, loss=loss)
    """

    rows: ClassVar[Rows] = Rows.PAIRS_INBATCH
    recipe_options: ClassVar[dict[str, str]] = {"alpha": "alpha"}

    def __init__(
        self,
        model: Any,
        *,
        alpha: float = 0.75,
        similarity_fct: str | SimilarityFn = "dot",
        inbatch_teacher: InBatchTeacher | nn.Module | None = None,
        teacher_similarity_fct: str | SimilarityFn = "dot",
        gather_across_devices: bool = True,
    ) -> None:
        super().__init__()
        if not alpha >= 0:
            raise InputError(f"alpha must be a non-negative number, got {alpha}")
        self.model = model
        self.alpha = float(alpha)
        self.similarity_fct = matrix_similarity(similarity_fct)
        self.teacher_similarity_fct = matrix_similarity(teacher_similarity_fct)
        self._names = {
            "similarity_fct": similarity_fct if isinstance(similarity_fct, str) else None,
            "teacher_similarity_fct": teacher_similarity_fct if isinstance(teacher_similarity_fct, str) else None,
        }
        pairwise = similarity_fct if isinstance(similarity_fct, str) else _Diagonal(similarity_fct)
        self.pair_loss = MarginMSELoss(model, similarity_fct=pairwise)
        if isinstance(inbatch_teacher, BaseModel):
            inbatch_teacher = FrozenBiEncoderTeacher(inbatch_teacher)
        self.inbatch_teacher = inbatch_teacher
        self.gather_across_devices = gather_across_devices

    @staticmethod
    def pack_labels(pair_labels: Tensor, inbatch_scores: Tensor) -> Tensor:
        """One label tensor ``(batch, P + G * (1 + n))`` from pair labels and in-batch teacher scores."""
        if pair_labels.ndim == 1:
            pair_labels = pair_labels.unsqueeze(1)
        return torch.cat([pair_labels.to(inbatch_scores.dtype), inbatch_scores], dim=1)

    def _rank_and_world(self) -> tuple[int, int]:
        return distributed_rank_and_world() if self.gather_across_devices else (0, 1)

    @staticmethod
    def _has_inbatch_labels(labels: Tensor | None, n_columns: int) -> bool:
        return labels is not None and labels.ndim == 2 and labels.size(1) > n_columns

    def forward(self, sentence_features: Iterable[dict[str, Any]], labels: Tensor | None) -> LossParts:
        features = list(sentence_features)
        teacher_embeddings = None
        if self.inbatch_teacher is not None and not self._has_inbatch_labels(labels, len(features) - 1):
            with torch.no_grad():
                teacher_embeddings = self.inbatch_teacher([dict(columns) for columns in features])
        embeddings = embed_columns(self.model, features)
        return self.compute_loss_from_embeddings(embeddings, labels, teacher_embeddings=teacher_embeddings)

    def compute_loss_from_embeddings(
        self, embeddings: Sequence[Tensor], labels: Tensor | None, teacher_embeddings: Sequence[Tensor] | None = None
    ) -> LossParts:
        """``{"pair": L_pair, "inbatch": α · L_inbatch}`` for columns ``[query, positive, negative_1, ...]``.

        Args:
            embeddings: student embeddings, one ``(batch, dim)`` tensor per column.
            labels: pair labels, or pair labels packed with in-batch teacher scores (Inputs table).
            teacher_embeddings: in-batch teacher embeddings, one ``(batch, dim_t)`` tensor per
                column, used when the labels hold no in-batch scores.
        """
        name = type(self).__name__
        embeddings = list(embeddings)
        check_columns(name, embeddings, 3, "query, positive, negative_1, ...")
        query, columns = embeddings[0], embeddings[1:]
        batch_size, n_columns = int(query.size(0)), len(columns)
        rank, world = self._rank_and_world()
        global_size = batch_size * world
        pair_labels, targets = self._split_labels(labels, batch_size, n_columns, global_size)
        pair = self.pair_loss.compute_loss_from_embeddings(embeddings, pair_labels)

        if targets is None:
            targets = self._teacher_targets(teacher_embeddings, batch_size, n_columns, world)
        passages = [all_gather_with_grad(c) for c in columns] if world > 1 else columns
        inbatch = inbatch_margin_mse(
            query,
            torch.cat(passages, dim=0),
            targets,
            n_columns=n_columns,
            offset=rank * batch_size,
            similarity_fct=self.similarity_fct,
        )
        return LossParts(pair=pair, inbatch=self.alpha * inbatch)

    def inbatch_loss(self, embeddings: Sequence[Tensor], targets: Tensor) -> Tensor:
        """The unweighted ``L_inbatch`` of one process's batch, targets ``(batch, batch * (1 + n))``."""
        embeddings = list(embeddings)
        return inbatch_margin_mse(
            embeddings[0],
            torch.cat(embeddings[1:], dim=0),
            targets,
            n_columns=len(embeddings) - 1,
            similarity_fct=self.similarity_fct,
        )

    def _split_labels(
        self, labels: Tensor | None, batch_size: int, n_columns: int, global_size: int
    ) -> tuple[Tensor | None, Tensor | None]:
        if not self._has_inbatch_labels(labels, n_columns):
            return labels, None
        assert labels is not None
        n_neg, width = n_columns - 1, global_size * n_columns
        pair_width = int(labels.size(1)) - width
        if labels.size(0) != batch_size or pair_width not in (n_neg, n_columns):
            where = (
                f"the global batch of {global_size} queries ({batch_size} per rank × {global_size // batch_size} ranks)"
                if global_size != batch_size
                else f"the batch of {batch_size} queries"
            )
            pair_shapes = [(batch_size,)] if n_neg == 1 else []
            pair_shapes += [(batch_size, n_neg), (batch_size, n_columns)]
            raise InputError(
                f"{type(self).__name__}: expected labels of shape {' or '.join(map(str, pair_shapes))} "
                f"(pair labels only, with teacher embeddings or an inbatch_teacher) or ({batch_size}, "
                f"{n_neg} or {n_columns} + {width}) (pair labels, then the in-batch teacher scores of "
                f"each query against the {n_columns} passage columns of {where}); got {tuple(labels.shape)}"
            )
        return labels[:, :pair_width], labels[:, pair_width:]

    def _teacher_targets(
        self, teacher_embeddings: Sequence[Tensor] | None, batch_size: int, n_columns: int, world: int
    ) -> Tensor:
        if teacher_embeddings is None:
            raise InputError(
                f"{type(self).__name__} needs in-batch teacher scores: pack them into the labels "
                f"(shape ({batch_size}, P + {batch_size * world * n_columns}), see pack_labels), pass "
                "teacher_embeddings, or construct the loss with an inbatch_teacher"
            )
        teacher_embeddings = [t.detach() for t in teacher_embeddings]
        shapes = [tuple(t.shape[:1]) for t in teacher_embeddings]
        if len(teacher_embeddings) != n_columns + 1 or set(shapes) != {(batch_size,)}:
            raise InputError(
                f"{type(self).__name__}: expected {n_columns + 1} teacher embedding columns of "
                f"{batch_size} rows (query, positive, negatives), got {len(teacher_embeddings)} with "
                f"rows {[s[0] for s in shapes]}"
            )
        passages = teacher_embeddings[1:]
        if world > 1:
            passages = [all_gather(t) for t in passages]
        return self.teacher_similarity_fct(teacher_embeddings[0], torch.cat(passages, dim=0))

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "similarity_fct": self._names["similarity_fct"] or getattr(self.similarity_fct, "__name__", "custom"),
            "teacher_similarity_fct": self._names["teacher_similarity_fct"]
            or getattr(self.teacher_similarity_fct, "__name__", "custom"),
            "inbatch_teacher": type(self.inbatch_teacher).__name__ if self.inbatch_teacher is not None else None,
            "gather_across_devices": self.gather_across_devices,
        }

    @property
    def citation(self) -> str:
        return """
@inproceedings{hofstaetter2021tasb,
    title={Efficiently Teaching an Effective Dense Retriever with Balanced Topic Aware Sampling},
    author={Sebastian Hofst{\\"a}tter and Sheng-Chieh Lin and Jheng-Hong Yang and Jimmy Lin and Allan Hanbury},
    booktitle={Proceedings of SIGIR},
    year={2021},
    eprint={2104.06967},
    archivePrefix={arXiv},
}
"""
