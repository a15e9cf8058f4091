"""Losses on seeded random tensors and hand-computed cases; a 2-process DDP check; one forward
through a tiny sentence-transformers model. No downloads."""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer.losses import DistillKLDivLoss
from sentence_transformers.sentence_transformer.losses import MarginMSELoss as STMarginMSELoss
from sentence_transformers.util import pairwise_cos_sim

from irdistill.errors import InputError, UnknownNameError
from irdistill.losses import (
    LOSSES,
    FrozenBiEncoderTeacher,
    HybridListwiseLoss,
    HybridLoss,
    InfoNCELoss,
    ListwiseKLLoss,
    LossParts,
    MarginMSELoss,
    TASBalancedLoss,
    inbatch_margin_mse,
    inbatch_teacher_scores,
)


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def random_columns(batch: int, n_columns: int, dim: int, seed: int, dtype=torch.float32) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, dim, generator=generator, dtype=dtype) for _ in range(n_columns)]


# --- registry ----------------------------------------------------------------------------------


def test_registry_names_and_unknown() -> None:
    assert LOSSES.names() == ["hybrid", "hybrid-kl", "infonce", "listwise-kl", "margin-mse", "tas-balanced"]
    assert LOSSES.get("Margin-MSE") is MarginMSELoss
    assert LOSSES.get("tas-balanced") is TASBalancedLoss
    with pytest.raises(UnknownNameError, match="known: hybrid, hybrid-kl, infonce, listwise-kl"):
        LOSSES.get("margin-mae")
    with pytest.raises(InputError, match="unknown similarity 'l2'; known: cosine, dot"):
        MarginMSELoss(None, similarity_fct="l2")


# --- Margin-MSE ---------------------------------------------------------------------------------

# 2 queries, 2 negatives, dot product:
#   q1 = [1, 0]: s(p+) = [1,0]·[2,0] = 2, s(n1) = [1,0]·[1,0] = 1, s(n2) = [1,0]·[0,1] = 0
#   q2 = [0, 1]: s(p+) = [0,1]·[0,3] = 3, s(n1) = [0,1]·[0,1] = 1, s(n2) = [0,1]·[1,0] = 0
#   student margins [[1, 2], [2, 3]]; teacher margins [[1, 1], [2, 1]]
#   squared differences 0, 1, 0, 4 -> mean 5 / 4 = 1.25
MM_EMB = [t([[1, 0], [0, 1]]), t([[2, 0], [0, 3]]), t([[1, 0], [0, 1]]), t([[0, 1], [1, 0]])]


def test_margin_mse_hand_computed() -> None:
    loss = MarginMSELoss(None)
    assert loss.compute_loss_from_embeddings(MM_EMB, t([[1, 1], [2, 1]])).item() == pytest.approx(1.25)
    # raw teacher scores [t(p+), t(n1), t(n2)] with the same margins: 5-4=1, 5-4=1; 3-1=2, 3-2=1
    assert loss.compute_loss_from_embeddings(MM_EMB, t([[5, 4, 4], [3, 1, 2]])).item() == pytest.approx(1.25)
    # one negative, labels (batch,): margins [1, 2] vs teacher [0, 2] -> (1 + 0) / 2 = 0.5
    assert loss.compute_loss_from_embeddings(MM_EMB[:3], t([0, 2])).item() == pytest.approx(0.5)
    # cosine: q1·p1 = 1, q1·n1 = 1 -> margin 0; q2·p2 = 1, q2·n1 = 1 -> 0; teacher [1, 2] -> 2.5
    cosine = MarginMSELoss(None, similarity_fct="cosine")
    assert cosine.compute_loss_from_embeddings(MM_EMB[:3], t([1, 2])).item() == pytest.approx(2.5)


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_margin_mse_equals_sentence_transformers(similarity: str) -> None:
    emb = random_columns(5, 5, 8, seed=1)  # query, positive, 3 negatives
    scores = torch.randn(5, 4, generator=torch.Generator().manual_seed(2))
    ours = MarginMSELoss(None, similarity_fct=similarity)
    theirs = STMarginMSELoss(None) if similarity == "dot" else STMarginMSELoss(None, similarity_fct=pairwise_cos_sim)
    for labels in (scores, scores[:, :1] - scores[:, 1:]):
        torch.testing.assert_close(
            ours.compute_loss_from_embeddings(emb, labels), theirs.compute_loss_from_embeddings(emb, labels)
        )
    torch.testing.assert_close(
        ours.compute_loss_from_embeddings(emb[:3], scores[:, 0]),
        theirs.compute_loss_from_embeddings(emb[:3], scores[:, 0]),
    )


def test_margin_mse_label_shape_errors() -> None:
    loss = MarginMSELoss(None)
    with pytest.raises(ValueError, match=r"expected teacher labels of shape \(2, 2\) or \(2, 3\).*got \(2, 4\)"):
        loss.compute_loss_from_embeddings(MM_EMB, torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"got \(2,\)"):  # (batch,) only for one negative
        loss.compute_loss_from_embeddings(MM_EMB, torch.zeros(2))
    with pytest.raises(ValueError, match=r"\(2,\) or \(2, 1\) or \(2, 2\).*got \(3,\)"):
        loss.compute_loss_from_embeddings(MM_EMB[:3], torch.zeros(3))
    with pytest.raises(ValueError, match="needs teacher labels"):
        loss.compute_loss_from_embeddings(MM_EMB, None)
    with pytest.raises(ValueError, match="at least 3 input columns"):
        loss.compute_loss_from_embeddings(MM_EMB[:2], torch.zeros(2))


# --- listwise KL --------------------------------------------------------------------------------


def kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True) if pi > 0)


def test_listwise_kl_two_candidates_by_hand() -> None:
    # student scores [0, 0] (q = [1, 0] against [0, 1] and [0, 2]); teacher scores [2, 0]
    # τ = 2: p = softmax([1, 0]) = [e/(e+1), 1/(e+1)] = [0.7311, 0.2689], q = [0.5, 0.5]
    # KL = 0.7311 ln(1.4621) + 0.2689 ln(0.5379) = 0.27772 - 0.16678 = 0.11094
    emb = [t([[1, 0]]), t([[0, 1]]), t([[0, 2]])]
    e = math.e
    loss = ListwiseKLLoss(None, temperature=2.0, scale_by_temperature_squared=False).compute_loss_from_embeddings(
        emb, t([[2, 0]])
    )
    assert loss.item() == pytest.approx(kl([e / (e + 1), 1 / (e + 1)], [0.5, 0.5]), rel=1e-5)
    assert loss.item() == pytest.approx(0.11094, abs=1e-5)
    # the default multiplies by τ² = 4 (Hinton et al.; sentence-transformers)
    scaled = ListwiseKLLoss(None, temperature=2.0).compute_loss_from_embeddings(emb, t([[2, 0]]))
    assert scaled.item() == pytest.approx(4 * 0.11094, abs=4e-5)
    # τ = 1: p = softmax([2, 0]) = [0.8808, 0.1192] -> KL = 0.8808 ln 1.7616 + 0.1192 ln 0.2384 = 0.3256
    sharp = ListwiseKLLoss(None, temperature=1.0, scale_by_temperature_squared=False).compute_loss_from_embeddings(
        emb, t([[2, 0]])
    )
    assert sharp.item() == pytest.approx(kl([e**2 / (e**2 + 1), 1 / (e**2 + 1)], [0.5, 0.5]), rel=1e-5)
    assert sharp.item() > loss.item()  # a higher temperature flattens both distributions


@pytest.mark.parametrize("temperature", [0.05, 1.0, 10.0])
def test_listwise_kl_identical_distributions_is_zero(temperature: float) -> None:
    emb = random_columns(4, 6, 8, seed=3)  # query + 5 candidates
    student = torch.stack([(emb[0] * c).sum(-1) for c in emb[1:]], dim=1)
    loss = ListwiseKLLoss(None, temperature=temperature, scale_by_temperature_squared=False)
    assert loss.compute_loss_from_embeddings(emb, student.clone()).item() == pytest.approx(0.0, abs=1e-6)


def test_listwise_kl_mean_over_queries_and_st_scaling() -> None:
    emb = random_columns(3, 5, 8, seed=4)
    teacher = torch.randn(3, 4, generator=torch.Generator().manual_seed(5))
    tau = 3.0
    ours = ListwiseKLLoss(None, temperature=tau, scale_by_temperature_squared=False).compute_loss_from_embeddings(
        emb, teacher
    )
    student = torch.stack([(emb[0] * c).sum(-1) for c in emb[1:]], dim=1)
    p, log_q = torch.softmax(teacher / tau, 1), torch.log_softmax(student / tau, 1)
    expected = (p * (p.log() - log_q)).sum(1).mean()  # KL per query, mean over queries
    torch.testing.assert_close(ours, expected)
    scaled = ListwiseKLLoss(None, temperature=tau)  # the default: sentence-transformers' τ² factor
    torch.testing.assert_close(
        scaled.compute_loss_from_embeddings(emb, teacher),
        DistillKLDivLoss(None, temperature=tau).compute_loss_from_embeddings(emb, teacher),
    )


def test_listwise_kl_in_batch_negatives_by_hand() -> None:
    # 2 rows, lists of 2 (dot product, τ = 1, no τ² factor); 2-d embeddings
    #   row 0: q0 = [1, 0], candidates a = [2, 0], b = [0, 1]; teacher [3, 1], floor -1
    #   row 1: q1 = [0, 1], candidates c = [0, 2], d = [1, 1]; teacher [2, 0], floor -2
    # the softmax of each query runs over a, b, c, d; the other row's passages sit at its floor
    #   q0: student [2, 0, 0, 1], teacher [3, 1, -1, -1]
    #   q1: student [0, 1, 2, 1], teacher [-2, -2, 2, 0]
    q, c1, c2 = t([[1, 0], [0, 1]]), t([[2, 0], [0, 2]]), t([[0, 1], [1, 1]])
    labels = t([[3, 1, -1], [2, 0, -2]])

    def softmax(x: list[float]) -> list[float]:
        z = [math.exp(v) for v in x]
        return [v / sum(z) for v in z]

    expected = (
        kl(softmax([3, 1, -1, -1]), softmax([2, 0, 0, 1])) + kl(softmax([-2, -2, 2, 0]), softmax([0, 1, 2, 1]))
    ) / 2
    loss = ListwiseKLLoss(
        None, temperature=1.0, scale_by_temperature_squared=False, in_batch_negatives=True, in_batch_target="floor"
    )
    assert loss.compute_loss_from_embeddings([q, c1, c2], labels).item() == pytest.approx(expected, rel=1e-5)
    # the default target gives the other row's passages no mass: the teacher's softmax over the own
    # list, 0 elsewhere, against the student's softmax over all four
    own0, own1 = softmax([3, 1]), softmax([2, 0])
    zero_expected = (kl([*own0, 0, 0], softmax([2, 0, 0, 1])) + kl([0, 0, *own1], softmax([0, 1, 2, 1]))) / 2
    zero = ListwiseKLLoss(None, temperature=1.0, in_batch_negatives=True)
    assert zero.in_batch_target == "zero"
    assert zero.compute_loss_from_embeddings([q, c1, c2], labels).item() == pytest.approx(zero_expected, rel=1e-5)
    # exclude: the plain KL over the own list, the floor column ignored
    excluded = ListwiseKLLoss(None, temperature=1.0, in_batch_negatives=True, in_batch_target="exclude")
    # without in-batch negatives the same lists give a different value (only a, b and c, d)
    plain = (kl(softmax([3, 1]), softmax([2, 0])) + kl(softmax([2, 0]), softmax([2, 1]))) / 2
    assert abs(plain - expected) > 0.05
    listwise = ListwiseKLLoss(None, temperature=1.0, scale_by_temperature_squared=False)
    assert listwise.compute_loss_from_embeddings([q, c1, c2], labels[:, :2]).item() == pytest.approx(plain, rel=1e-5)
    assert excluded.compute_loss_from_embeddings([q, c1, c2], labels).item() == pytest.approx(plain, rel=1e-5)
    # τ = 0.5 on both sides and the τ² factor: 0.25 x the KL of the doubled logits
    half = ListwiseKLLoss(
        None, temperature=0.5, in_batch_negatives=True, in_batch_target="floor", temperature_scaling="squared"
    )
    expected_half = (
        0.25
        * (kl(softmax([6, 2, -2, -2]), softmax([4, 0, 0, 2])) + kl(softmax([-4, -4, 4, 0]), softmax([0, 2, 4, 2])))
        / 2
    )
    assert half.compute_loss_from_embeddings([q, c1, c2], labels).item() == pytest.approx(expected_half, rel=1e-5)
    # the default (Hinton's max(τ, 1)²) leaves a τ below 1 unshrunk: 4x the squared value at τ = 0.5
    hinton = ListwiseKLLoss(None, temperature=0.5, in_batch_negatives=True, in_batch_target="floor")
    assert hinton.compute_loss_from_embeddings([q, c1, c2], labels).item() == pytest.approx(4 * expected_half, rel=1e-5)
    with pytest.raises(ValueError, match=r"\(batch, list_len \+ 1 \(the floor\)\) = \(2, 3\).*got \(2, 2\)"):
        loss.compute_loss_from_embeddings([q, c1, c2], labels[:, :2])
    with pytest.raises(ValueError, match="in-batch negatives need a named similarity"):
        ListwiseKLLoss(None, similarity_fct=lambda a, b: (a * b).sum(-1), in_batch_negatives=True)


def test_listwise_kl_label_shape_errors() -> None:
    emb = random_columns(2, 4, 4, seed=6)
    loss = ListwiseKLLoss(None)
    with pytest.raises(
        ValueError, match=r"expected teacher scores of shape \(batch, list_len\) = \(2, 3\).*got \(2, 4\)"
    ):
        loss.compute_loss_from_embeddings(emb, torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"= \(2, 3\).*got none"):
        loss.compute_loss_from_embeddings(emb, None)
    with pytest.raises(ValueError, match="at least 3 input columns"):
        loss.compute_loss_from_embeddings(emb[:2], torch.zeros(2, 1))


# --- InfoNCE ------------------------------------------------------------------------------------


def test_infonce_hand_computed_cross_entropy() -> None:
    # dot product, τ = 0.5 (logits = 2 · scores); passages [p1, p2, n1, n2]
    #   q1 = [1, 0]: scores [1, 0, 0.5, 0] -> logits [2, 0, 1, 0], positive at 0
    #   q2 = [0, 1]: scores [0, 1, 0, 0.5] -> logits [0, 2, 0, 1], positive at 1
    # each: -log(e^2 / (e^2 + e^1 + 1 + 1)) = -log(7.3891 / 12.1073) = 0.4938; mean 0.4938
    q, p, n = t([[1, 0], [0, 1]]), t([[1, 0], [0, 1]]), t([[0.5, 0], [0, 0.5]])
    loss = InfoNCELoss(None, temperature=0.5, similarity_fct="dot").compute_loss_from_embeddings([q, p, n])
    e = math.e
    assert loss.item() == pytest.approx(-math.log(e**2 / (e**2 + e + 2)), rel=1e-6)
    assert loss.item() == pytest.approx(0.4938, abs=1e-4)


def test_infonce_random_equals_cross_entropy() -> None:
    q, p, n1, n2 = random_columns(4, 4, 8, seed=7)
    ours = InfoNCELoss(None, temperature=0.1).compute_loss_from_embeddings([q, p, n1, n2])
    logits = F.normalize(q, dim=-1) @ F.normalize(torch.cat([p, n1, n2]), dim=-1).T / 0.1
    torch.testing.assert_close(ours, F.cross_entropy(logits, torch.arange(4)))


def test_infonce_rejects_labels() -> None:
    q, p = random_columns(2, 2, 4, seed=8)
    with pytest.raises(ValueError, match=r"takes no labels.*expected none, got a tensor of shape \(2,\)"):
        InfoNCELoss(None).compute_loss_from_embeddings([q, p], torch.zeros(2))
    with pytest.raises(ValueError, match="temperature must be positive"):
        InfoNCELoss(None, temperature=0.0)


# --- TAS-Balanced -------------------------------------------------------------------------------

# 2 queries, 1 negative, dot; passages of the batch in column order [p1, p2, n1, n2]
#   q1 = [1, 0]: student scores [2, 0, 1, 1]; q2 = [0, 1]: [0, 1, 1, 0]
#   pair: margins s(p+) - s(n): q1 2 - 1 = 1, q2 1 - 0 = 1; teacher margins [0.5, 1] -> (0.25 + 0) / 2 = 0.125
#   in-batch teacher t2: q1 [3, 1, 2, 2], q2 [1, 2, 0, 0]
#   q1 vs other queries' passages p2, n2: student margins 2-0 = 2, 2-1 = 1; teacher 3-1 = 2, 3-2 = 1 -> 0, 0
#   q2 vs p1, n1: student 1-0 = 1, 1-1 = 0; teacher 2-1 = 1, 2-0 = 2 -> 0, (-2)^2 = 4
#   L_inbatch = (0 + 0 + 0 + 4) / 4 = 1; total = 0.125 + 0.75 · 1 = 0.875
TAS_EMB = [t([[1, 0], [0, 1]]), t([[2, 0], [0, 1]]), t([[1, 1], [1, 0]])]
TAS_INBATCH = t([[3, 1, 2, 2], [1, 2, 0, 0]])


def test_tas_balanced_hand_computed() -> None:
    loss = TASBalancedLoss(None)
    parts = loss.compute_loss_from_embeddings(TAS_EMB, TASBalancedLoss.pack_labels(t([0.5, 1.0]), TAS_INBATCH))
    assert isinstance(parts, LossParts) and list(parts) == ["pair", "inbatch"]
    assert parts["pair"].item() == pytest.approx(0.125)
    assert parts["inbatch"].item() == pytest.approx(0.75 * 1.0)
    assert parts.total.item() == pytest.approx(0.875)
    # the ST trainer's reduction of a dict loss is the same total
    assert torch.stack(list(parts.values())).sum().item() == pytest.approx(0.875)
    assert loss.inbatch_loss(TAS_EMB, TAS_INBATCH).item() == pytest.approx(1.0)
    # raw pair scores [t(p+), t(n)] instead of margins: 2.5 - 2 = 0.5, 4 - 3 = 1
    raw = TASBalancedLoss.pack_labels(t([[2.5, 2], [4, 3]]), TAS_INBATCH)
    assert loss.compute_loss_from_embeddings(TAS_EMB, raw).total.item() == pytest.approx(0.875)
    # teacher embeddings whose dot products are TAS_INBATCH: queries e1, e2, so tq_i · tp_j = tp_j[i]
    tq = torch.eye(2)
    tp, tn = TAS_INBATCH[:, :2].T.contiguous(), TAS_INBATCH[:, 2:].T.contiguous()
    parts = loss.compute_loss_from_embeddings(TAS_EMB, t([0.5, 1.0]), teacher_embeddings=[tq, tp, tn])
    assert parts.total.item() == pytest.approx(0.875)


def naive_inbatch(query, columns, targets) -> torch.Tensor:
    """Double loop over queries and every passage of another query, dot product."""
    batch, passages = query.size(0), torch.cat(columns)
    terms = []
    for i in range(batch):
        own = {c * batch + i for c in range(len(columns))}
        s_pos, t_pos = query[i] @ passages[i], targets[i, i]
        for j in range(passages.size(0)):
            if j not in own:
                terms.append(((s_pos - query[i] @ passages[j]) - (t_pos - targets[i, j])) ** 2)
    return torch.stack(terms).mean()


@pytest.mark.parametrize("alpha", [0.75, 0.2])
def test_tas_balanced_vectorised_equals_double_loop(alpha: float) -> None:
    batch, n_neg = 3, 2
    emb = random_columns(batch, 2 + n_neg, 6, seed=9)
    generator = torch.Generator().manual_seed(10)
    targets = torch.randn(batch, batch * (1 + n_neg), generator=generator)
    pair_labels = torch.randn(batch, n_neg, generator=generator)
    loss = TASBalancedLoss(None, alpha=alpha)
    parts = loss.compute_loss_from_embeddings(emb, TASBalancedLoss.pack_labels(pair_labels, targets))
    naive = naive_inbatch(emb[0], emb[1:], targets)
    torch.testing.assert_close(loss.inbatch_loss(emb, targets), naive)
    torch.testing.assert_close(parts["inbatch"], alpha * naive)
    torch.testing.assert_close(parts["pair"], MarginMSELoss(None).compute_loss_from_embeddings(emb, pair_labels))
    torch.testing.assert_close(parts.total, parts["pair"] + alpha * naive)


def test_inbatch_margin_mse_single_query_is_zero_with_graph() -> None:
    q, p, n = (x.requires_grad_() for x in random_columns(1, 3, 4, seed=11))
    value = inbatch_margin_mse(q, torch.cat([p, n]), torch.zeros(1, 2), n_columns=2)
    assert value.item() == 0.0 and value.requires_grad


def test_tas_balanced_errors() -> None:
    loss = TASBalancedLoss(None)
    with pytest.raises(ValueError, match="needs in-batch teacher scores"):
        loss.compute_loss_from_embeddings(TAS_EMB, t([0.5, 1.0]))
    with pytest.raises(
        ValueError, match=r"or \(2, 1 or 2 \+ 4\) \(pair labels, then the in-batch teacher scores.*got \(2, 7\)"
    ):
        loss.compute_loss_from_embeddings(TAS_EMB, torch.zeros(2, 7))
    with pytest.raises(ValueError, match="expected 3 teacher embedding columns"):
        loss.compute_loss_from_embeddings(TAS_EMB, t([0.5, 1.0]), teacher_embeddings=[torch.eye(2)] * 2)
    with pytest.raises(
        ValueError,
        match=r"expected labels of shape \(2,\) or \(2, 1\) or \(2, 2\).*or \(2, 1 or 2 \+ 4\).*got \(2, 3\)",
    ):
        loss.compute_loss_from_embeddings(TAS_EMB, torch.zeros(2, 3), teacher_embeddings=[torch.eye(2)] * 3)
    with pytest.raises(ValueError, match="alpha must be"):
        TASBalancedLoss(None, alpha=-1)


def test_inbatch_teacher_scores_layout() -> None:
    class LengthTeacher:
        def score(self, queries, passages):
            return [10 * len(q) + len(p) for q, p in zip(queries, passages, strict=True)]

    queries, columns = ["a", "bb"], [["ppp", "pppp"], ["n", "nn"]]
    scores = inbatch_teacher_scores(LengthTeacher(), queries, columns)
    passages = columns[0] + columns[1]
    assert scores.shape == (2, 4) and scores.dtype == torch.float32
    assert scores.tolist() == [[10 * len(q) + len(p) for p in passages] for q in queries]
    with pytest.raises(ValueError, match="every passage column must hold 2 texts"):
        inbatch_teacher_scores(LengthTeacher(), queries, [["p"], ["n", "nn"]])


# --- DDP: 2 CPU processes against one process on the concatenated batch --------------------------

WORLD, LOCAL_BATCH, N_NEG, DIM_IN, DIM = 2, 2, 2, 5, 3


def ddp_problem() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(12)
    global_batch, n_columns = WORLD * LOCAL_BATCH, 2 + N_NEG
    return {
        "inputs": torch.randn(n_columns, global_batch, DIM_IN, generator=generator, dtype=torch.float64),
        "weight": torch.randn(DIM, DIM_IN, generator=generator, dtype=torch.float64),
        "pair": torch.randn(global_batch, 1 + N_NEG, generator=generator, dtype=torch.float64),
        "inbatch": torch.randn(global_batch, global_batch * (1 + N_NEG), generator=generator, dtype=torch.float64),
        "teacher": torch.randn(n_columns, global_batch, 4, generator=generator, dtype=torch.float64),
    }


def merged_forward(model: torch.nn.Module, inputs: torch.Tensor) -> list[torch.Tensor]:
    """One merged forward (as ST does) over all columns: the embedding columns."""
    n_columns, batch = inputs.shape[:2]
    return list(model(inputs.reshape(n_columns * batch, -1)).reshape(n_columns, batch, -1).unbind(0))


def backward(model: torch.nn.Module, parts: LossParts) -> dict[str, torch.Tensor]:
    model.zero_grad()
    parts.total.backward()
    return {name: value.detach() for name, value in parts.items()}


def linear_model(problem: dict[str, torch.Tensor]) -> torch.nn.Linear:
    linear = torch.nn.Linear(DIM_IN, DIM, bias=False, dtype=torch.float64)
    with torch.no_grad():
        linear.weight.copy_(problem["weight"])
    return linear


@contextmanager
def gloo(rank: int, port: int) -> Iterator[None]:
    """A gloo process group for a rank's body. On success the rank leaves with ``os._exit(0)``,
    running no destructor: dropping DDP's reducer and the group from Python deadlocked (the
    group's destructor joins its worker thread while holding the GIL that thread waits for)."""
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60)
    )
    yield
    torch.distributed.barrier()  # every rank has saved its results
    os._exit(0)


def run_tas(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor | None):
    """TAS-B loss of one merged forward, then backward."""
    teacher_embeddings = list(teacher.unbind(0)) if teacher is not None else None
    return backward(
        model,
        TASBalancedLoss(None).compute_loss_from_embeddings(merged_forward(model, inputs), labels, teacher_embeddings),
    )


def ddp_worker(rank: int, port: int, problem: dict[str, torch.Tensor], out_dir: str) -> None:
    with gloo(rank, port):
        linear = linear_model(problem)
        model = torch.nn.parallel.DistributedDataParallel(linear)
        rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        inputs = problem["inputs"][:, rows]
        results = {}
        packed = TASBalancedLoss.pack_labels(problem["pair"][rows], problem["inbatch"][rows])
        results["labels"] = run_tas(model, inputs, packed, None), linear.weight.grad.clone()
        teacher = problem["teacher"][:, rows]
        results["teacher"] = run_tas(model, inputs, problem["pair"][rows], teacher), linear.weight.grad.clone()
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))


def start_ranks(worker, problem: dict[str, torch.Tensor], out_dir: Path) -> None:
    """WORLD fresh processes (not forks of this one, whose OpenMP / torch thread pools earlier
    tests may have started)."""
    torch.multiprocessing.start_processes(
        worker, args=(free_port(), problem, str(out_dir)), nprocs=WORLD, join=True, start_method="spawn"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_tas_balanced_ddp_matches_single_process(tmp_path: Path) -> None:
    problem = ddp_problem()
    expected = {}
    for mode in ("labels", "teacher"):
        linear = linear_model(problem)
        if mode == "labels":
            labels, teacher = TASBalancedLoss.pack_labels(problem["pair"], problem["inbatch"]), None
        else:
            labels, teacher = problem["pair"], problem["teacher"]
        expected[mode] = run_tas(linear, problem["inputs"], labels, teacher), linear.weight.grad.clone()

    start_ranks(ddp_worker, problem, tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for mode, (parts, grad) in expected.items():
        for name in ("pair", "inbatch"):  # the logged loss: mean of the per-rank losses
            mean = sum(rank[mode][0][name] for rank in ranks) / WORLD
            torch.testing.assert_close(mean, parts[name], atol=1e-5, rtol=0)
        assert parts["inbatch"] > 0
        for rank in ranks:  # DDP-averaged gradients on every rank
            torch.testing.assert_close(rank[mode][1], grad, atol=1e-5, rtol=0)


# --- hybrid -------------------------------------------------------------------------------------


def test_hybrid_is_margin_mse_plus_beta_infonce() -> None:
    """The two parts equal the losses they are made of, on random embeddings."""
    generator = torch.Generator().manual_seed(3)
    emb = [torch.randn(5, 8, generator=generator) for _ in range(3)]
    margins = torch.randn(5, generator=generator).abs()  # the teacher agrees with every label
    parts = HybridLoss(None, beta=0.3, temperature=0.1).compute_loss_from_embeddings(emb, margins)
    torch.testing.assert_close(parts["distill"], MarginMSELoss(None).compute_loss_from_embeddings(emb, margins))
    infonce = InfoNCELoss(None, temperature=0.1).compute_loss_from_embeddings(emb, None)
    torch.testing.assert_close(parts["contrastive"], 0.3 * infonce)
    torch.testing.assert_close(parts.total, parts["distill"] + 0.3 * infonce)
    zero = HybridLoss(None, beta=0.0).compute_loss_from_embeddings(emb, margins)
    assert zero["contrastive"].item() == 0.0


def test_hybrid_drops_or_down_weights_pairs_the_teacher_orders_against_the_label() -> None:
    # dot products: student margins [1, 1, 1]; teacher margins [1, -2, 3] (pair 2: the teacher
    # ranks the judged positive below the negative); squared errors [0, 9, 4]
    q = t([[1, 0], [1, 0], [1, 0]])
    pos, neg = t([[2, 0], [2, 0], [2, 0]]), t([[1, 0], [1, 0], [1, 0]])
    margins = t([1, -2, 3])

    def distill(weight: float) -> float:
        loss = HybridLoss(None, disagreement_weight=weight)
        return loss.compute_loss_from_embeddings([q, pos, neg], margins)["distill"].item()

    assert distill(1.0) == pytest.approx(13 / 3)
    assert distill(0.0) == pytest.approx(4 / 2)  # pair 2 dropped
    assert distill(0.5) == pytest.approx((0 + 4.5 + 4) / 2.5)
    raw = HybridLoss(None).compute_loss_from_embeddings([q, pos, neg], t([[3, 2], [0, 2], [4, 1]]))
    assert raw["distill"].item() == pytest.approx(13 / 3)  # raw [t(p+), t(p-)] scores work too


def test_hybrid_drops_a_disagreeing_pairs_negative_from_its_own_contrastive_softmax() -> None:
    """With w = 0 the negative of a pair the teacher orders against the label leaves its own
    query's softmax (and only that one); w = 1 is plain InfoNCE; 0 < w < 1 counts it w times."""
    generator = torch.Generator().manual_seed(5)
    q, pos, neg = (torch.nn.functional.normalize(torch.randn(3, 4, generator=generator), dim=1) for _ in range(3))
    margins = t([1.0, -2.0, 3.0])  # row 1: the teacher scores its negative above the positive
    logits = torch.cat([q @ pos.T, q @ neg.T], dim=1) / 0.1  # cosine of unit vectors, τ = 0.1

    def expected(weight: float) -> float:
        counts = torch.ones_like(logits)
        counts[1, 3 + 1] = weight  # row 1's own negative
        terms = [torch.log((counts[i] * logits[i].exp()).sum()) - logits[i, i] for i in range(3)]
        return torch.stack(terms).mean().item()

    def contrastive(weight: float) -> float:
        loss = HybridLoss(None, beta=1.0, temperature=0.1, disagreement_weight=weight)
        return loss.compute_loss_from_embeddings([q, pos, neg], margins)["contrastive"].item()

    plain = InfoNCELoss(None, temperature=0.1).compute_loss_from_embeddings([q, pos, neg], None).item()
    assert contrastive(1.0) == pytest.approx(plain) == pytest.approx(expected(1.0))
    assert contrastive(0.0) == pytest.approx(expected(0.0))
    assert contrastive(0.25) == pytest.approx(expected(0.25))
    assert contrastive(0.0) < contrastive(0.25) < contrastive(1.0)  # fewer negatives, smaller loss
    agreeing = t([1.0, 2.0, 3.0])  # no disagreement: the weight changes nothing
    loss = HybridLoss(None, beta=1.0, temperature=0.1, disagreement_weight=0.0)
    value = loss.compute_loss_from_embeddings([q, pos, neg], agreeing)["contrastive"].item()
    assert value == pytest.approx(plain)


def test_hybrid_errors() -> None:
    with pytest.raises(InputError, match=r"disagreement_weight must lie in \[0, 1\], got 2"):
        HybridLoss(None, disagreement_weight=2)
    with pytest.raises(InputError, match="beta .* must be >= 0"):
        HybridLoss(None, beta=-1)
    emb = [torch.zeros(2, 4)] * 4
    with pytest.raises(InputError, match="exactly 3 columns"):
        HybridLoss(None).compute_loss_from_embeddings(emb, torch.zeros(2))
    with pytest.raises(InputError, match="HybridLoss needs teacher labels"):
        HybridLoss(None).compute_loss_from_embeddings(emb[:3], None)


def test_listwise_kl_target_puts_no_mass_outside_the_list() -> None:
    torch.manual_seed(0)
    labels = torch.randn(4, 9)  # 4 rows, lists of 8, then the floor
    labels[:, -1] = labels[:, :-1].min(dim=1).values
    zero = ListwiseKLLoss(None, temperature=0.2, in_batch_negatives=True).in_batch_target_probs(labels)
    own = torch.zeros(4, 32, dtype=torch.bool)
    for r in range(4):
        own[r, r * 8 : (r + 1) * 8] = True
    assert torch.all(zero[~own] == 0)
    # and the mass on the list is the teacher's softmax of it
    expected = torch.softmax(labels[:, :8] / 0.2, dim=1)
    torch.testing.assert_close(zero[own].view(4, 8), expected)
    # the first version's floor target gives the 24 other passages a share of the mass (at τ = 1 here)
    floor = ListwiseKLLoss(None, temperature=1.0, in_batch_negatives=True, in_batch_target="floor")
    assert floor.in_batch_target_probs(labels)[~own].sum().item() > 0.1


@pytest.mark.parametrize("in_batch_target", ["zero", "exclude"])
def test_listwise_kl_student_follows_the_teacher_against_the_labels(in_batch_target: str) -> None:
    # 6 queries with lists of 3; the teacher ranks c_3 first, c_1 (the judged positive) last.
    # A student with free query and passage vectors, trained on the KL alone, ends up with the
    # teacher's order, not the labels'.
    torch.manual_seed(3)
    queries = torch.nn.Parameter(torch.randn(6, 8) * 0.1)
    passages = torch.nn.Parameter(torch.randn(6, 3, 8) * 0.1)
    labels = torch.tensor([[0.0, 1.0, 2.0, -1.0]]).repeat(6, 1)  # c_1 0, c_2 1, c_3 2, floor -1
    loss_fn = ListwiseKLLoss(None, temperature=0.5, in_batch_negatives=True, in_batch_target=in_batch_target)
    optimiser = torch.optim.SGD([queries, passages], lr=0.5)
    for _ in range(300):
        optimiser.zero_grad()
        loss = loss_fn.compute_loss_from_embeddings([queries, *passages.unbind(dim=1)], labels)
        loss.backward()
        optimiser.step()
    scores = torch.einsum("qd,qld->ql", queries.detach(), passages.detach())
    assert torch.all(scores.argsort(dim=1, descending=True) == torch.tensor([2, 1, 0]))


# --- hybrid over lists (hybrid-kl) ----------------------------------------------------------------


def test_hybrid_kl_is_listwise_kl_plus_beta_infonce_on_the_first_candidate() -> None:
    # 2 queries, lists of 2, dot product everywhere, τ = 1 (as in the in-batch listwise test)
    q = t([[1, 0], [0, 1]])
    c1, c2 = t([[3, 1], [-1, -1]]), t([[1, 0], [2, 0]])  # row 0's list: (3,1), (-1,-1); row 1's: (1,0), (2,0)
    labels = t([[3, 0, -1], [1, 2, 0]])  # two teacher scores, then the floor
    # by default the KL runs over each query's own list, the in-batch negatives serving InfoNCE only
    kl_only = ListwiseKLLoss(None, temperature=1.0, scale_by_temperature_squared=False)

    def hybrid(distill_weight: float = 1.0, **options: Any) -> HybridListwiseLoss:
        return HybridListwiseLoss(
            None,
            temperature=1.0,
            scale_by_temperature_squared=False,
            in_batch_negatives=True,
            beta=0.5,
            contrastive_temperature=1.0,
            contrastive_similarity="dot",
            distill_weight=distill_weight,
            **options,
        )

    parts = hybrid().compute_loss_from_embeddings([q, c1, c2], labels)
    assert isinstance(parts, LossParts) and set(parts) == {"distill", "contrastive"}
    own_kl = kl_only.compute_loss_from_embeddings([q, c1, c2], labels[:, :2]).item()
    assert parts["distill"].item() == pytest.approx(own_kl) and own_kl > 0.01
    # the first version's KL (the other row's passages at the floor) is there on request
    floor_kl = ListwiseKLLoss(
        None, temperature=1.0, scale_by_temperature_squared=False, in_batch_negatives=True, in_batch_target="floor"
    ).compute_loss_from_embeddings([q, c1, c2], labels)
    floor_parts = hybrid(in_batch_target="floor").compute_loss_from_embeddings([q, c1, c2], labels)
    assert floor_parts["distill"].item() == pytest.approx(floor_kl.item()) and floor_kl.item() > 0.1
    assert floor_parts["contrastive"].item() == pytest.approx(parts["contrastive"].item())
    # the batch's passages in row order: (3,1), (1,0) of row 0, then (-1,-1), (2,0) of row 1;
    # query 0 scores them 3, 1, -1, 2 and its positive is the 1st; query 1: 1, 0, -1, 0, positive the 3rd
    expected = (-math.log(math.exp(3) / sum(map(math.exp, [3, 1, -1, 2])))) + (
        -math.log(math.exp(-1) / sum(map(math.exp, [1, 0, -1, 0])))
    )
    assert parts["contrastive"].item() == pytest.approx(0.5 * expected / 2, rel=1e-5)
    # without in-batch negatives each query's softmax runs over its own list only
    own = HybridListwiseLoss(None, beta=1.0, contrastive_temperature=1.0, contrastive_similarity="dot")
    alone = own.compute_loss_from_embeddings([q, c1, c2], labels[:, :2])["contrastive"].item()
    expected_own = (-math.log(math.exp(3) / (math.exp(3) + math.exp(1)))) + (
        -math.log(math.exp(-1) / (math.exp(-1) + math.exp(0)))
    )
    assert alone == pytest.approx(expected_own / 2, rel=1e-5)
    # β = 0 is listwise KL alone
    zero = HybridListwiseLoss(
        None, temperature=1.0, scale_by_temperature_squared=False, in_batch_negatives=True, beta=0
    )
    assert zero.compute_loss_from_embeddings([q, c1, c2], labels).total.item() == pytest.approx(parts["distill"].item())
    # α scales the KL part; α = 0 is InfoNCE over the teacher's lists, whose scores then go unused
    for alpha in (0.0, 2.0):
        scaled = hybrid(alpha).compute_loss_from_embeddings([q, c1, c2], labels)
        assert scaled["distill"].item() == pytest.approx(alpha * parts["distill"].item())
        assert scaled["contrastive"].item() == pytest.approx(parts["contrastive"].item())
    infonce = InfoNCELoss(None, temperature=1.0, similarity_fct="dot").compute_loss_from_embeddings([q, c1, c2])
    lists_only = HybridListwiseLoss(
        None, in_batch_negatives=True, contrastive_temperature=1.0, contrastive_similarity="dot", distill_weight=0
    )
    assert lists_only.compute_loss_from_embeddings([q, c1, c2], labels).total.item() == pytest.approx(infonce.item())


def test_hybrid_kl_gradient_pulls_the_positive_up() -> None:
    emb = [e.requires_grad_() for e in random_columns(4, 5, 8, seed=11)]
    labels = torch.zeros(4, 4)  # a flat teacher: only the contrastive term prefers c_1
    loss = HybridListwiseLoss(None, beta=1.0, temperature=1.0, scale_by_temperature_squared=False)
    loss.compute_loss_from_embeddings(emb, labels).total.backward()
    query, positive = emb[0], emb[1]
    # a step against the gradient raises the queries' mean cosine with their own judged positives
    step = 1e-2
    before = F.cosine_similarity(query, positive).mean()
    after = F.cosine_similarity(query - step * query.grad, positive - step * positive.grad).mean()
    assert after.item() > before.item() + 1e-3


def test_hybrid_kl_errors_and_config() -> None:
    with pytest.raises(InputError, match="beta .* must be >= 0"):
        HybridListwiseLoss(None, beta=-1)
    with pytest.raises(InputError, match="contrastive_temperature must be > 0"):
        HybridListwiseLoss(None, contrastive_temperature=0)
    with pytest.raises(InputError, match="distill_weight .* must be >= 0"):
        HybridListwiseLoss(None, distill_weight=-0.5)
    with pytest.raises(InputError, match="both 0"):
        HybridListwiseLoss(None, beta=0, distill_weight=0)
    with pytest.raises(ValueError, match=r"= \(2, 3\).*got none"):
        HybridListwiseLoss(None).compute_loss_from_embeddings(random_columns(2, 4, 4, seed=6), None)
    config = HybridListwiseLoss(None, beta=0.25, in_batch_negatives=True, distill_weight=0.5).get_config_dict()
    assert config["beta"] == 0.25 and config["distill_weight"] == 0.5
    assert config["contrastive_similarity"] == "cosine" and config["in_batch_negatives"]


def run_hybrid(model: torch.nn.Module, inputs: torch.Tensor, margins: torch.Tensor, weight: float = 1.0):
    loss = HybridLoss(None, beta=0.5, temperature=0.5, disagreement_weight=weight)
    return backward(model, loss.compute_loss_from_embeddings(merged_forward(model, inputs), margins))


def hybrid_worker(rank: int, port: int, problem: dict[str, torch.Tensor], out_dir: str) -> None:
    with gloo(rank, port):
        linear = linear_model(problem)
        model = torch.nn.parallel.DistributedDataParallel(linear)
        rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        weight = float(problem["disagreement_weight"])
        parts = run_hybrid(model, problem["inputs"][:3, rows], problem["margins"][rows], weight)
        torch.save((parts, linear.weight.grad.clone()), os.path.join(out_dir, f"hybrid{rank}.pt"))


@pytest.mark.parametrize("weight", [1.0, 0.0])
def test_hybrid_ddp_contrastive_term_uses_the_global_batch(tmp_path: Path, weight: float) -> None:
    """Under 2 gloo ranks, the in-batch negatives of the contrastive term come from both ranks:
    each rank's loss is the single-process loss of its own queries against the global batch,
    and the DDP-averaged gradient is the single-process gradient of the mean; with
    ``disagreement_weight`` 0 each rank masks its own rows' disagreeing negatives at their
    global place."""
    problem = ddp_problem()
    # every rank holds one pair the teacher orders against the label (the distill term's
    # weighted mean is per rank, as every loss's mean is under DDP)
    signs = torch.tensor([1.0, -1.0] * WORLD, dtype=problem["pair"].dtype)
    problem |= {"disagreement_weight": torch.tensor(weight), "margins": problem["pair"][:, 0].abs() * signs}
    inputs, margins = problem["inputs"][:3], problem["margins"]
    start_ranks(hybrid_worker, problem, tmp_path)
    ranks = [torch.load(tmp_path / f"hybrid{r}.pt") for r in range(WORLD)]
    linear = linear_model(problem)
    expected = run_hybrid(linear, inputs, margins, weight)
    for name in ("distill", "contrastive"):
        mean = sum(parts[name] for parts, _ in ranks) / WORLD
        torch.testing.assert_close(mean, expected[name], atol=1e-6, rtol=0)
    for _, grad in ranks:
        torch.testing.assert_close(grad, linear.weight.grad, atol=1e-6, rtol=0)
    # a local-only contrastive term (no gather) would differ: the other rank's passages matter
    local = run_hybrid(linear, inputs[:, :LOCAL_BATCH], margins[:LOCAL_BATCH], weight)["contrastive"]
    assert abs(local.item() - ranks[0][0]["contrastive"].item()) > 1e-3


# --- forward(features, labels) through a tiny sentence-transformers model ----------------------


def test_forward_through_tiny_model(tiny_model_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    student = SentenceTransformer(str(tiny_model_dir), device="cpu")
    student.eval()  # no dropout, so two forwards can be compared
    columns = [
        ["protein expression in cancer", "vaccine immune response"],
        ["high protein expression in tumor cells", "the vaccine trial shows immune response"],
        ["drug dose has no effect", "mouse brain cells"],
        ["virus infection", "study results"],
    ]

    def features() -> list[dict]:  # fresh dicts per call: ST modules write their outputs into them
        return [student.preprocess(column) for column in columns]

    scores = torch.tensor([[3.0, 1.0, 0.5], [2.0, 1.5, -1.0]])

    margin = MarginMSELoss(student)(features(), scores)
    margin.backward()
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert margin.item() > 0 and grads and any(g.abs().sum() > 0 for g in grads)
    student.zero_grad()

    # KL(softmax(t) || softmax(s)) per query, averaged, with s the student's dot products
    with torch.no_grad():
        emb = [student(f)["sentence_embedding"] for f in features()]
        s = torch.stack([(emb[0] * c).sum(-1) for c in emb[1:]], dim=1)
        p = torch.softmax(scores, dim=1)
        expected = (p * (p.log() - torch.log_softmax(s, dim=1))).sum(1).mean().item()
    assert expected > 0.01
    assert ListwiseKLLoss(student)(features(), scores).item() == pytest.approx(expected, rel=1e-5)
    assert InfoNCELoss(student)(features(), None).item() > 0

    teacher = SentenceTransformer(str(tiny_model_dir), device="cpu")
    tas = TASBalancedLoss(student, inbatch_teacher=teacher)
    assert isinstance(tas.inbatch_teacher, FrozenBiEncoderTeacher)
    tas.train()  # what the trainer does: the teacher stays in eval mode
    assert not tas.inbatch_teacher.training and student.training
    student.eval()
    assert not any(p.requires_grad for p in teacher.parameters())
    on_the_fly = tas(features(), scores)
    # the same loss with the teacher's scores precomputed and packed into the labels
    with torch.no_grad():
        emb = [teacher.encode(column, convert_to_tensor=True) for column in columns]
    packed = TASBalancedLoss.pack_labels(scores, emb[0] @ torch.cat(emb[1:]).T)
    precomputed = TASBalancedLoss(student)(features(), packed)
    torch.testing.assert_close(on_the_fly.total, precomputed.total, atol=1e-5, rtol=1e-5)
    on_the_fly.total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
