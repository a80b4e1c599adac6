"""Adversarial attacks as plain functions ``attack(model, x, y, ...) -> x_adv``.

Conventions: ``x`` is a float tensor (N, ...) in [0, 1]; ``model`` returns
logits (N, K); ``y`` holds int labels (N,) (target labels when
``targeted=True``).  Every attack evaluates the model in eval mode and restores
its previous mode, differentiates w.r.t. the input only (parameters' ``.grad``
is never touched), never modifies its inputs, and returns points in the box
[0, 1] (and, for norm-bounded attacks, in the eps-ball).

=====================  ==========================================  ===============
attack                 paper                                       module
=====================  ==========================================  ===============
fgsm, fgm              Goodfellow et al. 2015                      fgsm
bim, pgd               Kurakin et al. 2017, Madry et al. 2018      pgd
apgd, apgd_targeted    Croce & Hein 2020                           apgd
deepfool               Moosavi-Dezfooli et al. 2016                deepfool
cw_l2, cw_linf, cw_l0  Carlini & Wagner 2017                       cw
lbfgs                  Szegedy et al. 2014                         lbfgs
jsma                   Papernot et al. 2016                        jsma
square                 Andriushchenko et al. 2020                  square
transfer               (black-box transfer), gaussian_rubbish      transfer
embedding_pgd          Miyato et al. 2017 (text, on embeddings)    text
word_substitution      Ebrahimi et al. 2018, Jin et al. 2020       text
=====================  ==========================================  ===============

Evaluation helpers (robust accuracy, worst case over attacks, transfer matrices, the strong
evaluation, distortions) live in :mod:`advcourse.attacks.robustness`; :func:`input_gradient`
in :mod:`advcourse.attacks.gradients`; the gradient-masking audit in :mod:`advcourse.attacks.audit`.
"""

from ..evaluate import eval_mode
from .apgd import apgd, apgd_checkpoints, apgd_targeted, dlr_loss
from .audit import AuditReport, Check, audit, audit_table
from .cw import BOXES, OBJECTIVES, cw_l0, cw_l2, cw_linf, cw_objective
from .deepfool import deepfool
from .fgsm import fgm, fgsm
from .gradients import input_gradient, zero_gradient_fraction
from .jsma import jsma
from .lbfgs import lbfgs, lbfgs_untargeted
from .pgd import bim, pgd
from .robustness import (
    STRONG_COMPONENTS,
    WorstCase,
    accuracy_vs_eps,
    distortion,
    robust_accuracy,
    robust_mask,
    strong_evaluation,
    transfer_matrix,
    worst_case_over,
)
from .square import square, square_p_schedule
from .text import embedding_pgd, nearest_neighbours, word_substitution
from .transfer import TransferResult, gaussian_rubbish, transfer

__all__ = [
    "eval_mode",
    "embedding_pgd",
    "nearest_neighbours",
    "word_substitution",
    "fgsm",
    "fgm",
    "bim",
    "pgd",
    "apgd",
    "apgd_targeted",
    "apgd_checkpoints",
    "dlr_loss",
    "deepfool",
    "cw_l2",
    "cw_linf",
    "cw_l0",
    "cw_objective",
    "OBJECTIVES",
    "BOXES",
    "lbfgs",
    "lbfgs_untargeted",
    "jsma",
    "square",
    "square_p_schedule",
    "transfer",
    "TransferResult",
    "gaussian_rubbish",
    "robust_accuracy",
    "robust_mask",
    "accuracy_vs_eps",
    "worst_case_over",
    "WorstCase",
    "transfer_matrix",
    "strong_evaluation",
    "STRONG_COMPONENTS",
    "distortion",
    "input_gradient",
    "zero_gradient_fraction",
    "audit",
    "audit_table",
    "AuditReport",
    "Check",
]
