from __future__ import annotations

import pytest

from irdistill.errors import InputError
from irdistill.evaluation.fidelity import teacher_fidelity


def test_identical_and_reversed_orders() -> None:
    teacher = {"q": {"a": 3.0, "b": 2.0, "c": 1.0, "d": 0.0}}
    same = teacher_fidelity({"q": {"a": 30.0, "b": 20.0, "c": 10.0, "d": 0.0}}, teacher, k=2)
    assert same == {"kendall_tau": 1.0, "top2_overlap": 1.0, "queries": 1.0}
    rev = teacher_fidelity({"q": {"a": 0.0, "b": 1.0, "c": 2.0, "d": 3.0}}, teacher, k=2)
    assert rev["kendall_tau"] == pytest.approx(-1.0) and rev["top2_overlap"] == 0.0


def test_hand_computed_tau_over_common_candidates() -> None:
    # common candidates a, b, c (d unscored by the student): teacher a>b>c, student a>c>b
    # pairs: (a,b) concordant, (a,c) concordant, (b,c) discordant -> tau = (2 - 1) / 3
    teacher = {"q": {"a": 3.0, "b": 2.0, "c": 1.0, "d": 9.0}, "q2": {"x": 1.0}}
    student = {"q": {"a": 1.0, "b": 0.1, "c": 0.5}, "q2": {"x": 1.0}}
    result = teacher_fidelity(student, teacher, k=1)
    assert result["kendall_tau"] == pytest.approx(1 / 3)
    assert result["top1_overlap"] == 1.0 and result["queries"] == 1.0  # q2 has one common candidate


def test_no_common_query_is_an_error() -> None:
    with pytest.raises(InputError, match="share no query"):
        teacher_fidelity({"q": {"a": 1.0}}, {"r": {"a": 1.0, "b": 2.0}})
