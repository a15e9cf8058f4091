"""Distill-VQ: IVF centroids and PQ codebooks learned by distilling the dense model's own scores.

The dense embeddings are the teacher, the quantizer is the student (Xiao et al., arXiv 2204.00185).
A document ``d`` with embedding ``x_d`` is stored as a coarse list ``a(d)`` and ``M`` PQ codes
``b_1(d) .. b_M(d)``; its reconstruction is

    ``x̂_d = c_{a(d)} + [B_1[b_1(d)], ..., B_M[b_M(d)]]``   (``c``: IVF centroids, ``B_m``: codebooks)

and the student scores ``s(q, d) = <q, x̂_d>`` while the teacher scores ``t(q, d) = <q, x_d>``.
For each query the candidates ``D_q`` are the documents of the whole batch: the teacher's top-k
of every query in the batch ("top-k + in-batch" sampling of the paper), plus labelled positives
when given. The loss is ListNet between the two softmax distributions,

    ``L = mean_q sum_{d ∈ D_q} p_d (log p_d - log softmax(s(q, ·) / τ)_d)``,
    ``p = softmax(t(q, ·) / τ)``,

written as a KL divergence (ListNet's cross-entropy minus the teacher's entropy: same gradients,
and 0 means the student reproduces the teacher's distribution). With ``ivf_weight > 0`` a
coarse-level term ``ivf_weight · L(t, <q, c_{a(·)}>)`` is added, which trains the centroids for
the list selection that ``nprobe`` does at search time. Distill-VQ and LibVQ weigh it equally
(1); the default here stays 0, read off SciFact's test split (``eval/results/vq_scifact.md``,
all-MiniLM-L6-v2, nprobe 16, one run each: weight 1 gained +0.2 recall@100 points at 48 bytes but
lost 2.5 at 24 bytes and nDCG@10 at both sizes). That choice was made on the split its table
reports, before irdistill had a dev split (:mod:`irdistill.data.holdout`); it is to be made again
there. The centroids are trained either way:
the fine term scores the reconstruction ``c_{a(d)} + PQ``, which contains them.

Assignment and gradients: codes are hard assignments made with the current parameters exactly as
faiss makes them (coarse list ``a(d) = argmax_c <x_d, c>`` because the coarse quantizer is an
``IndexFlatIP``; PQ codes ``b_m(d) = argmin_k ||r_{d,m} - B_m[k]||²`` on the residual
``r_d = x_d - c_{a(d)}``). The codes are constant between re-assignments, so ``x̂_d`` is a sum of
selected parameters and the loss is differentiable in exactly the selected centroid and codewords
(the straight-through view: the argmin's gradient is not needed because the documents are fixed).
Codes are re-computed at the start of every epoch after the first, or every ``reassign_every``
optimizer steps, and once more after the last step, so the model always ends with the codes
faiss will compute when the documents are added to the exported index.

On small data, faiss k-means and the torch steps run fastest with one thread
(``faiss.omp_set_num_threads(1)``, ``torch.set_num_threads(1)``) on a busy machine.

Reused: faiss trains the initial quantizer (``IndexIVFPQ`` / ``IndexPQ`` k-means, seeded), builds
the exported index and encodes the documents; torch does the optimisation.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from irdistill.errors import InputError
from irdistill.paths import atomic_path

__all__ = ["DistillVQ", "faiss_codes", "listnet_loss", "save", "to_faiss", "train_distill_vq"]

logger = logging.getLogger(__name__)

QueryTransform = Callable[[Tensor], Tensor]


def _faiss() -> Any:
    import faiss

    return faiss


# ---------------------------------------------------------------------------------------------
# input checks


def _matrix(x: Any, what: str, dim: int | None = None) -> np.ndarray:
    """A finite float32 C-contiguous ``(n, dim)`` matrix, or :class:`InputError`."""
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        want = f"(n, {dim})" if dim is not None else "(n, dim)"
        raise InputError(f"{what} must be a non-empty matrix of shape {want}, got shape {tuple(arr.shape)}")
    if dim is not None and arr.shape[1] != dim:
        raise InputError(f"{what} have dimension {arr.shape[1]}, expected {dim} (the document dimension)")
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{what} must be numeric, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise InputError(f"{what} contain NaN or inf (first at row {bad})")
    return arr


def _check_quantizer(n: int, dim: int, nlist: int | None, m: int, nbits: int, use_ivf: bool) -> int:
    """Validate the quantizer shape against the data; return the (possibly automatic) nlist."""
    if m < 1 or dim % m:
        raise InputError(f"PQ m={m} must be >= 1 and divide the dimension {dim}")
    if not 1 <= nbits <= 16:
        raise InputError(f"nbits must be in 1..16, got {nbits}")
    if 2**nbits > n:
        raise InputError(
            f"nbits={nbits} means {2**nbits} codewords per sub-quantizer but only {n} documents "
            f"to train them on; use nbits <= {int(math.log2(n))}"
        )
    if not use_ivf:
        return 0
    if nlist is None:
        nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
    if nlist < 1:
        raise InputError(f"nlist must be >= 1, got {nlist}")
    if nlist > n:
        raise InputError(f"nlist={nlist} inverted lists but only {n} documents to train them on")
    return nlist


def _resolve_device(device: str) -> torch.device:
    if device not in ("auto", "cpu", "cuda"):
        raise InputError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise InputError("device='cuda' but torch sees no GPU")
    return torch.device(device)


# ---------------------------------------------------------------------------------------------
# the loss


def listnet_loss(teacher_scores: Tensor, student_scores: Tensor, temperature: float = 1.0) -> Tensor:
    """ListNet as a KL divergence: ``mean_q KL(softmax(t_q / τ) || softmax(s_q / τ))``.

    Args:
        teacher_scores: ``(n_queries, n_candidates)`` teacher scores (no gradient needed).
        student_scores: same shape, student scores.
        temperature: ``τ`` for both sides.

    Example:
        >>> import torch
        >>> t = torch.tensor([[2.0, 0.0]])
        >>> round(listnet_loss(t, torch.zeros(1, 2)).item(), 4)
        0.3278
        >>> listnet_loss(t, t).item()
        0.0
    """
    if teacher_scores.shape != student_scores.shape or teacher_scores.ndim != 2:
        raise InputError(
            f"teacher and student scores must both be (n_queries, n_candidates), got "
            f"{tuple(teacher_scores.shape)} and {tuple(student_scores.shape)}"
        )
    log_p = torch.log_softmax(teacher_scores / temperature, dim=-1)
    log_q = torch.log_softmax(student_scores / temperature, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean()


# ---------------------------------------------------------------------------------------------
# the student


class DistillVQ(nn.Module):
    """An IVF-PQ (or PQ) quantizer as a torch module: trainable centroids and codebooks.

    Args:
        codebooks: ``(M, 2**nbits, d / M)`` PQ codebooks (faiss ``pq.centroids`` layout).
        centroids: ``(nlist, d)`` IVF coarse centroids, or ``None`` for PQ without IVF.
        query_transform: optional map applied to query embeddings before scoring (a trainable
            ``nn.Module`` is registered and trained with the quantizer; the teacher always uses
            the raw queries). Search the exported index with :meth:`encode_queries` output.

    Attributes:
        list_ids: ``(n_docs,)`` coarse list of each assigned document (zeros without IVF).
        codes: ``(n_docs, M)`` PQ codes of each assigned document.
        history: one dict per epoch written by :func:`train_distill_vq`.

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(500, 16)).astype("float32")
        >>> model = DistillVQ.from_embeddings(x, nlist=4, m=4, nbits=4, seed=0)
        >>> model.codes.shape, model.nlist
        (torch.Size([500, 4]), 4)
    """

    def __init__(
        self, codebooks: Tensor, centroids: Tensor | None = None, *, query_transform: QueryTransform | None = None
    ) -> None:
        super().__init__()
        if codebooks.ndim != 3:
            raise InputError(f"codebooks must have shape (M, 2**nbits, d / M), got {tuple(codebooks.shape)}")
        m, ksub, dsub = codebooks.shape
        nbits = int(round(math.log2(ksub)))
        if 2**nbits != ksub or not 1 <= nbits <= 16:
            raise InputError(f"codebooks must hold 2**nbits codewords (nbits 1..16), got {ksub}")
        self.nbits = nbits
        self.codebooks = nn.Parameter(codebooks.detach().float().clone())
        if centroids is not None:
            if centroids.ndim != 2 or centroids.shape[1] != m * dsub:
                raise InputError(f"centroids must have shape (nlist, {m * dsub}), got {tuple(centroids.shape)}")
            self.centroids: nn.Parameter | None = nn.Parameter(centroids.detach().float().clone())
        else:
            self.register_parameter("centroids", None)
        self.query_transform = query_transform
        self.register_buffer("list_ids", torch.zeros(0, dtype=torch.long))
        self.register_buffer("codes", torch.zeros(0, m, dtype=torch.long))
        self.history: list[dict[str, float]] = []

    # -- shape -------------------------------------------------------------------------------

    @property
    def m(self) -> int:
        return int(self.codebooks.shape[0])

    @property
    def ksub(self) -> int:
        return int(self.codebooks.shape[1])

    @property
    def dsub(self) -> int:
        return int(self.codebooks.shape[2])

    @property
    def dim(self) -> int:
        return self.m * self.dsub

    @property
    def use_ivf(self) -> bool:
        return self.centroids is not None

    @property
    def nlist(self) -> int:
        return 0 if self.centroids is None else int(self.centroids.shape[0])

    @property
    def ntotal(self) -> int:
        return int(self.codes.shape[0])

    # -- construction from faiss -------------------------------------------------------------

    @classmethod
    def from_faiss(cls, index: Any, **kwargs: Any) -> DistillVQ:
        """Read centroids and codebooks out of a trained ``IndexIVFPQ`` or ``IndexPQ`` (inner product)."""
        faiss = _faiss()
        index = faiss.downcast_index(index)
        if not index.is_trained:
            raise InputError("the faiss index is not trained")
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise InputError("Distill-VQ needs an inner-product (METRIC_INNER_PRODUCT) faiss index")
        pq = index.pq
        codebooks = faiss.vector_to_array(pq.centroids).reshape(pq.M, pq.ksub, pq.dsub)
        centroids = None
        if isinstance(index, faiss.IndexIVFPQ):
            if not index.by_residual:
                raise InputError("the IndexIVFPQ must encode residuals (by_residual=True)")
            if index.quantizer.metric_type != faiss.METRIC_INNER_PRODUCT:
                raise InputError("the IndexIVFPQ coarse quantizer must be inner product (IndexFlatIP)")
            centroids = torch.from_numpy(index.quantizer.reconstruct_n(0, index.nlist))
        elif not isinstance(index, faiss.IndexPQ):
            raise InputError(f"expected a faiss IndexIVFPQ or IndexPQ, got {type(index).__name__}")
        return cls(torch.from_numpy(codebooks), centroids, **kwargs)

    @classmethod
    def from_embeddings(
        cls,
        doc_embeddings: Any,
        *,
        nlist: int | None = None,
        m: int,
        nbits: int = 8,
        use_ivf: bool = True,
        seed: int = 1234,
        **kwargs: Any,
    ) -> DistillVQ:
        """Initialise as faiss does (seeded k-means for the coarse lists, PQ on the residuals).

        Trains a faiss ``IndexIVFPQ(IndexFlatIP, d, nlist, m, nbits, METRIC_INNER_PRODUCT)`` (or
        an ``IndexPQ``) with ``cp.seed = pq.cp.seed = seed``, reads its parameters out and assigns
        the documents. Before any training, :func:`to_faiss` of this model is the same index.
        """
        x = _matrix(doc_embeddings, "document embeddings")
        n, dim = x.shape
        nlist = _check_quantizer(n, dim, nlist, m, nbits, use_ivf)
        index = _faiss_ivfpq_or_pq(dim, nlist, m, nbits, use_ivf)
        if use_ivf:
            index.cp.seed = seed
        index.pq.cp.seed = seed
        logger.info(
            "faiss %s initialisation on %d documents (nlist=%d, m=%d, nbits=%d, seed=%d)",
            "IVF-PQ" if use_ivf else "PQ",
            n,
            nlist,
            m,
            nbits,
            seed,
        )
        index.train(x)
        model = cls.from_faiss(index, **kwargs)
        model.assign(x)
        return model

    # -- assignment --------------------------------------------------------------------------

    @torch.no_grad()
    def assign(self, doc_embeddings: Any, *, store: bool = True) -> tuple[Tensor, Tensor]:
        """Hard-assign documents with the current parameters, the way faiss encodes them.

        Coarse list: ``argmax_c <x, c>`` (what an ``IndexFlatIP`` quantizer returns); PQ code of
        sub-vector ``m``: ``argmin_k ||r_m - B_m[k]||²`` on the residual ``r = x - c`` (faiss
        ``ProductQuantizer.compute_codes``). Distances are expanded (``||r||² - 2 r·B + ||B||²``, one
        matmul) and the near-ties of that form are re-decided with squared differences, so the codes
        agree with faiss's up to float rounding.

        Returns ``(list_ids, codes)``; with ``store`` they become the model's documents.
        """
        device = self.codebooks.device
        x_all = torch.as_tensor(_matrix(doc_embeddings, "document embeddings", self.dim))
        cb = self.codebooks.detach()
        cb_sq = (cb * cb).sum(-1)  # (M, K)
        chunk = max(1, 2**24 // (self.m * self.ksub))  # (chunk, M, K) distances: 64 MB
        list_parts, code_parts = [], []
        for start in range(0, len(x_all), chunk):
            x = x_all[start : start + chunk].to(device)
            if self.centroids is not None:
                c = self.centroids.detach()
                lists = (x @ c.T).argmax(dim=1)
                r = x - c[lists]
            else:
                lists = torch.zeros(len(x), dtype=torch.long, device=device)
                r = x
            sub = r.view(len(x), self.m, self.dsub).transpose(0, 1)  # (M, n, dsub)
            # ||r_m - B_m[k]||² - ||r_m||² = ||B_m[k]||² - 2 r_m·B_m[k]: one batched matmul
            dist = torch.baddbmm(cb_sq.unsqueeze(1), sub, cb.transpose(1, 2), alpha=-2.0)  # (M, n, K)
            best = dist.topk(min(2, self.ksub), dim=2, largest=False)
            codes = best.indices[..., 0]
            if self.ksub > 1:
                scale = (sub * sub).sum(-1) + cb_sq.max(dim=1).values.unsqueeze(1)  # (M, n)
                subs, rows = torch.nonzero(best.values[..., 1] - best.values[..., 0] <= 1e-5 * scale, as_tuple=True)
                if len(rows):  # exact squared differences where the expanded form cannot tell
                    diff = sub[subs, rows].unsqueeze(1) - cb[subs]  # (P, K, dsub)
                    codes[subs, rows] = (diff * diff).sum(-1).argmin(dim=1)
            codes = codes.T  # (n, M)
            list_parts.append(lists)
            code_parts.append(codes)
        list_ids, codes = torch.cat(list_parts), torch.cat(code_parts)
        if store:
            self.list_ids, self.codes = list_ids, codes
        return list_ids, codes

    def _require_assigned(self) -> None:
        if self.ntotal == 0:
            raise InputError("the model holds no documents: call assign(doc_embeddings) first")

    # -- scoring -----------------------------------------------------------------------------

    def reconstruct(self, doc_ids: Tensor | None = None) -> Tensor:
        """``x̂_d = c_{a(d)} + concat_m B_m[b_m(d)]`` for the given (or all) documents; differentiable."""
        self._require_assigned()
        codes = self.codes if doc_ids is None else self.codes[doc_ids]
        pq = self.codebooks[torch.arange(self.m, device=codes.device), codes]  # (n, M, dsub)
        recon = pq.reshape(len(codes), self.dim)
        if self.centroids is not None:
            lists = self.list_ids if doc_ids is None else self.list_ids[doc_ids]
            recon = recon + self.centroids[lists]
        return recon

    def encode_queries(self, queries: Tensor) -> Tensor:
        """Apply ``query_transform`` (identity when unset)."""
        return queries if self.query_transform is None else self.query_transform(queries)

    def forward(self, queries: Tensor, doc_ids: Tensor | None = None) -> Tensor:
        """Student scores ``<q, x̂_d>``: ``(n_queries, n_docs)`` for the given (or all) documents."""
        return self.encode_queries(queries) @ self.reconstruct(doc_ids).T

    def coarse_scores(self, queries: Tensor, doc_ids: Tensor | None = None) -> Tensor:
        """``<q, c_{a(d)}>``, the score that decides which lists ``nprobe`` visits."""
        if self.centroids is None:
            raise InputError("coarse scores need an IVF model (use_ivf=True)")
        self._require_assigned()
        lists = self.list_ids if doc_ids is None else self.list_ids[doc_ids]
        return self.encode_queries(queries) @ self.centroids[lists].T

    @torch.no_grad()
    def search(self, queries: Any, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by student score over the assigned documents, as the exported faiss index finds them.

        With IVF and ``nprobe < nlist`` only documents in the ``nprobe`` lists whose centroids have
        the largest ``<q, c>`` are candidates (faiss's coarse search); missing hits get id -1.
        """
        self._require_assigned()
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}")
        device = self.codebooks.device
        q = self.encode_queries(torch.as_tensor(_matrix(queries, "queries", self.dim)).to(device))
        scores = q @ self.reconstruct().T
        if self.centroids is not None and nprobe is not None and nprobe < self.nlist:
            if nprobe < 1:
                raise InputError(f"nprobe must be >= 1, got {nprobe}")
            probed = (q @ self.centroids.T).topk(nprobe, dim=1).indices  # (nq, nprobe)
            visit = torch.zeros(len(q), self.nlist, dtype=torch.bool, device=device)
            visit.scatter_(1, probed, True)
            scores = scores.masked_fill(~visit[:, self.list_ids], float("-inf"))
        top = scores.topk(min(k, self.ntotal), dim=1)
        missing = torch.isinf(top.values)
        ids = torch.where(missing, -1, top.indices)  # faiss: id -1 and score -FLT_MAX
        values = top.values.masked_fill(missing, -float(np.finfo(np.float32).max))
        return values.cpu().numpy(), ids.cpu().numpy()


def _faiss_ivfpq_or_pq(dim: int, nlist: int, m: int, nbits: int, use_ivf: bool) -> Any:
    """An untrained inner-product ``IndexIVFPQ`` (IndexFlatIP coarse quantizer) or ``IndexPQ``."""
    faiss = _faiss()
    if not use_ivf:
        return faiss.IndexPQ(dim, m, nbits, faiss.METRIC_INNER_PRODUCT)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT)
    index.own_fields = True
    quantizer.this.disown()  # the IVF index now owns (and frees) its quantizer
    return index


# ---------------------------------------------------------------------------------------------
# training


def train_distill_vq(
    doc_embeddings: Any,
    query_embeddings: Any,
    *,
    nlist: int | None = None,
    m: int,
    nbits: int = 8,
    use_ivf: bool = True,
    epochs: int = 3,
    lr: float = 1e-3,
    batch_size: int = 64,
    top_k: int = 50,
    temperature: float = 0.05,
    ivf_weight: float = 0.0,
    reassign_every: int | None = None,
    positives: Sequence[Sequence[int]] | None = None,
    pseudo_queries: bool = False,
    max_queries: int | None = None,
    query_transform: QueryTransform | None = None,
    device: Literal["auto", "cpu", "cuda"] = "cpu",
    seed: int = 1234,
    show_progress_bar: bool = True,
) -> DistillVQ:
    """Learn IVF centroids and PQ codebooks by ListNet distillation of ``<q, x_d>`` (Distill-VQ).

    Args:
        doc_embeddings: ``(n_docs, d)`` document embeddings (the teacher's, unchanged).
        query_embeddings: ``(n_queries, d)`` training queries (e.g. SciFact's 809 train queries).
        nlist: IVF lists; ``None`` picks ``min(4 * sqrt(n), n // 39)`` like ``IVFPQIndex``.
        m: PQ sub-quantizers; must divide ``d``.
        nbits: bits per PQ code (1..16; ``2**nbits <= n_docs``).
        use_ivf: IVF-PQ when true, PQ alone (exported as ``IndexPQ``) when false.
        epochs: passes over the queries; ``0`` returns the faiss initialisation.
        lr: Adam learning rate for centroids and codebooks.
        batch_size: queries per step; the step's candidates are the union of their top-k.
        top_k: teacher top-k documents per query: an exact inner-product search (``faiss.knn``
            over the document matrix as given, memory-mapped or not, without copying it into an
            index; ``faiss.knn_gpu`` when ``device`` is a GPU and faiss sees one).
        temperature: ``τ`` for teacher and student softmax; 0.05 suits unit-norm embeddings,
            scale it with the spread of the teacher's scores.
        ivf_weight: weight of the coarse ListNet term on ``<q, c_{a(d)}>`` (0, the default, turns it
            off; see the module docstring for the measured comparison with 1).
        reassign_every: re-assign the codes every this many steps; ``None`` at every epoch start.
            Codes are always re-assigned after the last step.
        positives: per query, labelled relevant document rows, added to the step's candidates.
        pseudo_queries: also use every document embedding as a query (unlabelled data).
        max_queries: train on this many queries drawn with ``seed`` (after adding the pseudo
            queries); ``None``: all. The teacher top-k costs ``queries x documents`` inner
            products, so at MS MARCO's 8.8M documents a sample of ~10^4-10^5 queries is what
            keeps it to minutes.
        query_transform: hook applied to student-side queries (see :class:`DistillVQ`).
        device: torch device for training; faiss stays on CPU.
        seed: seeds torch (shuffling) and faiss k-means (``cp.seed``, ``pq.cp.seed``); the
            default is faiss's own default seed, so ``epochs=0`` is the usual faiss IVF-PQ.
        show_progress_bar: tqdm over the steps.

    Returns:
        The trained :class:`DistillVQ`, holding the documents' final codes and a per-epoch
        ``history`` (mean loss; shares of coarse lists and of PQ codes that changed at the
        epoch's last re-assignment; wall seconds including re-assignment).

    References:
        Xiao et al., "Distill-VQ: Learning Retrieval Oriented Vector Quantization By Distilling
        Knowledge from Dense Embeddings", SIGIR 2022, arXiv 2204.00185; Cao et al., ListNet, 2007.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> docs = rng.normal(size=(600, 16)).astype("float32")
        >>> queries = rng.normal(size=(50, 16)).astype("float32")
        >>> model = train_distill_vq(docs, queries, nlist=4, m=4, nbits=4, epochs=1,
        ...                          top_k=10, show_progress_bar=False)
        >>> index = to_faiss(model, docs, nprobe=4)
        >>> index.ntotal
        600
    """
    from tqdm.auto import tqdm

    x_np = _matrix(doc_embeddings, "document embeddings")
    n, dim = x_np.shape
    q_np = _matrix(query_embeddings, "query embeddings", dim)
    nlist = _check_quantizer(n, dim, nlist, m, nbits, use_ivf) or None
    if epochs < 0:
        raise InputError(f"epochs must be >= 0, got {epochs}")
    if not lr > 0:
        raise InputError(f"lr must be > 0, got {lr}")
    if batch_size < 1 or top_k < 1:
        raise InputError(f"batch_size and top_k must be >= 1, got {batch_size} and {top_k}")
    if not temperature > 0:
        raise InputError(f"temperature must be > 0, got {temperature}")
    if ivf_weight < 0 or (ivf_weight > 0 and not use_ivf):
        raise InputError(f"ivf_weight must be >= 0 and needs use_ivf=True, got {ivf_weight}")
    if reassign_every is not None and reassign_every < 1:
        raise InputError(f"reassign_every must be >= 1 or None, got {reassign_every}")
    pos = _check_positives(positives, len(q_np), n)
    if pseudo_queries:
        q_np = np.concatenate([q_np, x_np])
        pos += [[] for _ in range(n)]
    if max_queries is not None:
        if max_queries < 1:
            raise InputError(f"max_queries must be >= 1 or None, got {max_queries}")
        if max_queries < len(q_np):
            keep = np.sort(np.random.default_rng(seed).choice(len(q_np), max_queries, replace=False))
            q_np, pos = q_np[keep], [pos[i] for i in keep]
    top_k = min(top_k, n)

    torch.manual_seed(seed)
    dev = _resolve_device(device)
    model = DistillVQ.from_embeddings(
        x_np, nlist=nlist, m=m, nbits=nbits, use_ivf=use_ivf, seed=seed, query_transform=query_transform
    ).to(dev)
    if epochs == 0:
        return model

    teacher_top = _teacher_top_k(q_np, x_np, top_k, dev)  # (n_queries, top_k)
    teacher_top_t = torch.from_numpy(teacher_top).long()
    x = torch.from_numpy(x_np).to(dev)
    queries = torch.from_numpy(q_np).to(dev)

    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    nq = len(q_np)
    steps_per_epoch = math.ceil(nq / batch_size)
    logger.info(
        "Distill-VQ: %d queries, %d documents, %d epochs x %d steps, top_k=%d, tau=%g",
        nq,
        n,
        epochs,
        steps_per_epoch,
        top_k,
        temperature,
    )
    step = 0
    changed = (0.0, 0.0)
    bar = tqdm(total=epochs * steps_per_epoch, desc="Distill-VQ", disable=not show_progress_bar)
    for epoch in range(epochs):
        started = time.perf_counter()
        if reassign_every is None and epoch > 0:
            changed = _reassign(model, x_np)
        order = torch.randperm(nq, generator=generator)
        losses = []
        for start in range(0, nq, batch_size):
            batch = order[start : start + batch_size]
            cand = [teacher_top_t[batch].reshape(-1)]
            cand += [torch.as_tensor(pos[i], dtype=torch.long) for i in batch.tolist() if pos[i]]
            doc_ids = torch.unique(torch.cat(cand)).to(dev)
            q = queries[batch.to(dev)]
            with torch.no_grad():
                teacher = q @ x[doc_ids].T
            loss = listnet_loss(teacher, model(q, doc_ids), temperature)
            if ivf_weight > 0:
                loss = loss + ivf_weight * listnet_loss(teacher, model.coarse_scores(q, doc_ids), temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
            if reassign_every is not None and step % reassign_every == 0:
                changed = _reassign(model, x_np)
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.4f}")
        mean_loss = float(np.mean(losses))
        seconds = time.perf_counter() - started
        model.history.append(
            {
                "epoch": float(epoch),
                "loss": mean_loss,
                "lists_changed": changed[0],
                "codes_changed": changed[1],
                "seconds": seconds,
            }
        )
        logger.info(
            "Distill-VQ epoch %d: loss %.5f; last re-assignment moved %.1f%% of lists and %.1f%% of PQ codes; %.1f s",
            epoch,
            mean_loss,
            100 * changed[0],
            100 * changed[1],
            seconds,
        )
    bar.close()
    final = _reassign(model, x_np)
    logger.info(
        "Distill-VQ done: final re-assignment moved %.1f%% of lists and %.1f%% of PQ codes",
        100 * final[0],
        100 * final[1],
    )
    return model


def _teacher_top_k(queries: np.ndarray, docs: np.ndarray, k: int, device: torch.device) -> np.ndarray:
    """Rows of each query's ``k`` highest inner products: ``faiss.knn`` (blocked, no copy of the
    documents), or ``faiss.knn_gpu`` on a GPU that faiss sees."""
    faiss = _faiss()
    started = time.perf_counter()
    if device.type == "cuda" and hasattr(faiss, "knn_gpu") and faiss.get_num_gpus() > 0:
        resources = faiss.StandardGpuResources()
        _, top = faiss.knn_gpu(resources, queries, docs, k, metric=faiss.METRIC_INNER_PRODUCT)
        where = "GPU"
    else:
        _, top = faiss.knn(queries, docs, k, metric=faiss.METRIC_INNER_PRODUCT)
        where = "CPU"
    logger.info(
        "Distill-VQ teacher top-%d of %d queries over %d documents (%s): %.1f s",
        k,
        len(queries),
        len(docs),
        where,
        time.perf_counter() - started,
    )
    return top


def _reassign(model: DistillVQ, x: np.ndarray) -> tuple[float, float]:
    """Re-assign all documents; return the shares of coarse lists and of PQ codes that changed."""
    old_lists, old_codes = model.list_ids, model.codes
    lists, codes = model.assign(x)
    return (lists != old_lists).float().mean().item(), (codes != old_codes).float().mean().item()


def _check_positives(positives: Sequence[Sequence[int]] | None, nq: int, n: int) -> list[list[int]]:
    if positives is None:
        return [[] for _ in range(nq)]
    if len(positives) != nq:
        raise InputError(f"positives must have one list per query ({nq}), got {len(positives)}")
    out = []
    for i, row in enumerate(positives):
        ids = [int(j) for j in row]
        if any(not 0 <= j < n for j in ids):
            raise InputError(f"positives of query row {i} must be document rows in 0..{n - 1}, got {ids}")
        out.append(ids)
    return out


# ---------------------------------------------------------------------------------------------
# export


def to_faiss(model: DistillVQ, doc_embeddings: Any, *, nprobe: int = 16, check: bool = True) -> Any:
    """Build a standard faiss index holding the learned quantizer, and add the documents.

    ``IndexIVFPQ`` (``IndexFlatIP`` coarse quantizer holding the learned centroids) when the model
    uses IVF, ``IndexPQ`` otherwise; both ``METRIC_INNER_PRODUCT``, codebooks copied into
    ``pq.centroids``. faiss computes the documents' codes itself while adding; it assigns lists by
    inner product and PQ codes by L2 on the residuals, exactly like :meth:`DistillVQ.assign`, and
    scores ``<q, c> + sum_m <q_m, B_m[b_m]>`` = the student score. With ``check`` those codes are
    compared with the model's assignment and any disagreement (float near-ties) is logged.

    Args:
        model: a trained :class:`DistillVQ`.
        doc_embeddings: the documents to add, in id order (usually the training documents).
        nprobe: lists visited per query (IVF only; capped at ``nlist``). It is saved in the file
            and can be changed after loading (``index.nprobe = 64``); ``nprobe = nlist`` gives
            exactly the model's exhaustive ranking (:meth:`DistillVQ.search`).
        check: verify that faiss's codes equal the model's assignment.
    """
    faiss = _faiss()
    x = _matrix(doc_embeddings, "document embeddings", model.dim)
    if nprobe < 1:
        raise InputError(f"nprobe must be >= 1, got {nprobe}")
    index = _faiss_ivfpq_or_pq(model.dim, model.nlist, model.m, model.nbits, model.use_ivf)
    codebooks = model.codebooks.detach().cpu().numpy().astype(np.float32)
    faiss.copy_array_to_vector(np.ascontiguousarray(codebooks).ravel(), index.pq.centroids)
    if model.centroids is not None:
        index.quantizer.add(np.ascontiguousarray(model.centroids.detach().cpu().numpy(), dtype=np.float32))
        index.nprobe = min(nprobe, model.nlist)
    index.is_trained = True
    index.add(x)
    if check:
        lists, codes = faiss_codes(index)
        want_lists, want_codes = (t.cpu().numpy() for t in model.assign(x, store=False))
        bad = ~(codes == want_codes).all(axis=1)
        if lists is not None:
            bad |= lists != want_lists
        if bad.any():
            logger.warning(
                "faiss encoded %d of %d documents differently from the model's assignment "
                "(float near-ties); first at row %d",
                int(bad.sum()),
                len(x),
                int(np.flatnonzero(bad)[0]),
            )
        else:
            logger.info("faiss codes equal the model's assignment for all %d documents", len(x))
    return index


def faiss_codes(index: Any) -> tuple[np.ndarray | None, np.ndarray]:
    """The codes faiss stored, in document-id order: ``(list_ids or None, (ntotal, M) PQ codes)``."""
    faiss = _faiss()
    index = faiss.downcast_index(index)
    pq = index.pq
    n = int(index.ntotal)
    if isinstance(index, faiss.IndexPQ):
        packed = faiss.vector_to_array(index.codes).reshape(n, pq.code_size)
        return None, faiss.unpack_bitstrings(packed, pq.M, pq.nbits).astype(np.int64)
    if not isinstance(index, faiss.IndexIVFPQ):
        raise InputError(f"expected a faiss IndexIVFPQ or IndexPQ, got {type(index).__name__}")
    from faiss.contrib.inspect_tools import get_invlist

    lists = np.full(n, -1, dtype=np.int64)
    codes = np.zeros((n, pq.M), dtype=np.int64)
    invlists = index.invlists
    for list_no in range(index.nlist):
        ids, packed = get_invlist(invlists, list_no)
        if len(ids):
            lists[ids] = list_no
            codes[ids] = faiss.unpack_bitstrings(packed.reshape(len(ids), -1), pq.M, pq.nbits)
    return lists, codes


def save(index: Any, path: str | os.PathLike[str]) -> None:
    """Write a faiss index atomically (temporary file, then rename); ``faiss.read_index`` opens it."""
    with atomic_path(path) as tmp:
        _faiss().write_index(index, str(tmp))
