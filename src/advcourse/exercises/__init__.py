"""Checkers for the exercises marked "checked automatically" in the book, one module a chapter.

Each ``check_*`` function takes the reader's answer (usually a function), runs it
on cases with known answers, and either returns a short success message or
raises ``AssertionError`` saying what went wrong.
"""

from .ch01 import check_linear_worst_case

__all__ = ["check_linear_worst_case"]
