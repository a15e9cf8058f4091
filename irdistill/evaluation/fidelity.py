"""Teacher fidelity: does a student rank a query's candidates the way its teacher does?

nDCG says whether a student learned the task; fidelity says whether it learned the teacher.
For each query, over the candidates both scored (e.g. the BM25 top 100):

- Kendall's tau-b between the two score lists (``scipy.stats.kendalltau``; 1 = same order);
- top-k overlap ``|top_k(student) ∩ top_k(teacher)| / k``.

Both are averaged over queries with at least two common candidates.
"""

from __future__ import annotations

import math

import numpy as np

from irdistill.data.collection import Run
from irdistill.errors import InputError


def teacher_fidelity(student: Run, teacher: Run, k: int = 10) -> dict[str, float]:
    """Mean Kendall tau and top-k overlap of ``student`` against ``teacher``, per query."""
    from scipy.stats import kendalltau

    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")
    taus, overlaps = [], []
    for qid, t_scores in teacher.items():
        s_scores = student.get(qid)
        if not s_scores:
            continue
        common = sorted(set(t_scores) & set(s_scores))
        if len(common) < 2:
            continue
        t = np.array([t_scores[d] for d in common])
        s = np.array([s_scores[d] for d in common])
        tau = kendalltau(s, t).statistic
        if not math.isnan(tau):
            taus.append(float(tau))
        depth = min(k, len(common))
        top_t = {common[i] for i in np.argsort(-t, kind="stable")[:depth]}
        top_s = {common[i] for i in np.argsort(-s, kind="stable")[:depth]}
        overlaps.append(len(top_t & top_s) / depth)
    if not overlaps:
        raise InputError("student and teacher share no query with two or more scored candidates")
    return {
        "kendall_tau": float(np.mean(taus)) if taus else float("nan"),
        f"top{k}_overlap": float(np.mean(overlaps)),
        "queries": float(len(overlaps)),
    }
