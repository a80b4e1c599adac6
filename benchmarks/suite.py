"""The attacks of the benchmark: which adapters, on which models, with which budget."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import adapters as ad
from adapters import Settings

# the robust models the strong evaluations run on
ROBUST = ("fgsm-at", "ch04-pgd")
# extra rows: a library's second configuration, named "<library> <what>" (selected with its library)
AA100 = "torchattacks AA-100"
PGD5 = "advcourse PGD×5"


@dataclasses.dataclass(frozen=True)
class Attack:
    key: str
    title: Callable[[Settings], str]  # the settings, written out for the table
    adapters: dict  # library -> adapter
    size: str  # the option holding the number of images: "n_pgd", "n_cw", ...
    linf: bool  # an eps-ball attack (eps violations are checked) or a minimal-L2 one
    steps: Callable[[Settings], int] | None  # nominal gradient steps, for the overhead factor
    models: tuple = ("undefended", "fgsm-at")
    repeated: bool = True  # timed over --repeats (else --aa-repeats)
    # advcourse's calls replayed on the bare model (its model-only time); only where each of its
    # calls with a gradient is followed by exactly one backward pass, as the replay assumes
    replay: bool = False


ATTACKS = (
    Attack(
        "pgd",
        lambda s: f"PGD-{s.pgd_steps}, L∞ ε={s.eps}, α={s.pgd_alpha}, random start",
        {"advcourse": ad.advcourse_pgd, "torchattacks": ad.torchattacks_pgd, "foolbox": ad.foolbox_pgd,
         "art": ad.art_pgd},
        "n_pgd", True, lambda s: s.pgd_steps, replay=True,
    ),
    Attack(
        "cw",
        lambda s: (f"C&W L2, {s.cw_binary_steps} binary-search steps × {s.cw_steps} iterations, "
                   f"lr={s.cw_lr}, κ={s.cw_kappa}, initial c={s.cw_c}"),
        {"advcourse": ad.advcourse_cw, "torchattacks": ad.torchattacks_cw, "foolbox": ad.foolbox_cw,
         "art": ad.art_cw},
        "n_cw", False, lambda s: s.cw_binary_steps * s.cw_steps, replay=True,
    ),
    Attack(
        "deepfool",
        lambda s: (f"DeepFool L2, overshoot={s.df_overshoot}, ≤{s.df_steps} iterations, "
                   f"{s.df_candidates} candidate classes"),
        {"advcourse": ad.advcourse_deepfool, "torchattacks": ad.torchattacks_deepfool,
         "foolbox": ad.foolbox_deepfool, "art": ad.art_deepfool},
        "n_df", False, lambda s: s.df_steps,
    ),
    Attack(
        "strong",
        lambda s: (f"advcourse strong_evaluation (defaults: APGD-CE {s.aa_steps} iterations, APGD-T {s.aa_steps} "
                   "iterations × 3 target classes, Square 1000 queries with p_init 0.8) vs torchattacks AutoAttack "
                   f"as shipped and AutoAttack at the paper's {s.aa_steps} iterations, L∞ ε={s.eps}"),
        {"advcourse": ad.advcourse_strong, "torchattacks": ad.torchattacks_autoattack,
         AA100: ad.torchattacks_autoattack100},
        "n_aa", True, None, models=ROBUST, repeated=False, replay=True,
    ),
    Attack(
        "apgd",
        lambda s: (f"APGD-CE, {s.aa_steps} iterations, 1 run, vs PGD-CE {s.aa_steps} steps × 5 restarts "
                   f"(α = 2.5ε/{s.aa_steps}, early stop), L∞ ε={s.eps}"),
        {"advcourse": ad.advcourse_apgd, PGD5: ad.advcourse_pgd_restarts, "torchattacks": ad.torchattacks_apgd},
        "n_aa", True, lambda s: s.aa_steps, models=ROBUST, repeated=False, replay=True,
    ),
)

NOTES = {
    "pgd": "advcourse stops each image once it is misclassified (`early_stop=True`) and returns the best "
           "iterate; the peers run all steps and return the last iterate. foolbox takes `abs_stepsize`, "
           "ART `eps_step` with `num_random_init=1`.",
    "cw": "torchattacks `CW` has **no binary search**: it runs once at the initial c for "
          "binary-search steps × iterations Adam steps. ART's `CarliniL2Method` optimises with gradient "
          "descent and a line search (`learning_rate` is its initial step; max 5 halvings/doublings), "
          "not Adam, and doubles c on failure; advcourse and foolbox use Adam with the paper's "
          "×10-then-bisect search. Where it finds nothing, foolbox returns an all-black image (misclassified, so "
          "it counts as a success here, with a large L2); the others return the clean image.",
    "deepfool": "torchattacks `DeepFool` uses every class as a candidate (10 = all on MNIST), works image by "
                "image, and applies the overshoot to each step rather than to the total perturbation; "
                "ART's overshoot is its `epsilon`, its candidates `nb_grads`.",
    "strong": "Timed once (`--aa-repeats`). AutoAttack standard = APGD-CE, APGD-T (9 targets), FAB-T "
              "(9 targets), Square (5000 queries); torchattacks ships it with 10 iterations for its three gradient "
              "attacks (`torchattacks`); `torchattacks AA-100` is the same chain built from torchattacks' "
              "components with the paper's 100 iterations.",
    "apgd": "Timed once (`--aa-repeats`). All three stop on an image once it is misclassified; "
            "`advcourse PGD×5` is `pgd(restarts=5, early_stop=True)`, the gradient half of the previous "
            "strong evaluation.",
}
