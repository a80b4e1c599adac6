"""The automatic exercise checkers accept right answers and reject wrong ones."""

import pytest

from advcourse.exercises import check_linear_worst_case


def right(w, b, x, y, eps):
    return (x - eps * (2 * y - 1).to(x.dtype).unsqueeze(1) * w.sign()).clamp(0, 1)


def test_accepts_the_solution():
    assert "passed" in check_linear_worst_case(right)


@pytest.mark.parametrize("wrong, why", [
    (lambda w, b, x, y, eps: x - eps * (2 * y - 1).float().unsqueeze(1) * w.sign(), "box"),
    (lambda w, b, x, y, eps: (x + eps * (2 * y - 1).float().unsqueeze(1) * w.sign()).clamp(0, 1), "optimum"),
    (lambda w, b, x, y, eps: (x - 0.5 * eps * (2 * y - 1).float().unsqueeze(1) * w.sign()).clamp(0, 1), "optimum"),
    (lambda w, b, x, y, eps: (x - 2 * eps * (2 * y - 1).float().unsqueeze(1) * w.sign()).clamp(0, 1), "ball"),
    (lambda w, b, x, y, eps: x[:, :-1], "shape"),
])
def test_rejects_wrong_answers(wrong, why):
    with pytest.raises(AssertionError, match=why):
        check_linear_worst_case(wrong)
