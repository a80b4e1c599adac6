"""Checkers for the exercises marked "checked automatically" in the book, one module a chapter.

Each ``check_*`` function takes the reader's answer (usually a function), runs it
on cases with known answers, and either returns a short success message or
raises ``AssertionError`` saying what went wrong.
"""

from .ch01 import check_linear_worst_case
from .ch02 import check_fgsm
from .ch03 import check_operator_norm
from .ch04 import check_pgd_step
from .ch05 import check_f6
from .ch06 import check_straight_through

__all__ = ["check_linear_worst_case", "check_fgsm", "check_operator_norm", "check_pgd_step",
           "check_f6", "check_straight_through"]
