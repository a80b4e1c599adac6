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
from .ch07 import check_identity_block
from .ch08 import check_attention
from .ch09 import check_patch_embedding, check_rollout
from .ch10 import check_relative_index, check_shift_mask
from .ch11 import check_masked_loss, check_random_masking
from .ch12 import check_flip_scores, check_mlm_corrupt
from .ch13 import check_nonsaturating_loss, check_optimal_value

__all__ = ["check_linear_worst_case", "check_fgsm", "check_operator_norm", "check_pgd_step",
           "check_f6", "check_straight_through", "check_identity_block", "check_attention",
           "check_patch_embedding", "check_rollout", "check_relative_index", "check_shift_mask",
           "check_masked_loss", "check_random_masking", "check_mlm_corrupt", "check_flip_scores",
           "check_nonsaturating_loss", "check_optimal_value"]
