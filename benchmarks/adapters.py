"""One small adapter per library and attack: ``adapter(target, x, y, settings) -> x_adv``.

Every adapter receives the same :class:`Target` (the model, counted, plus the foolbox and
ART wrappers built once outside the timed region), the same images ``x`` (N, 1, 28, 28) in
[0, 1] and labels ``y``, and the same :class:`Settings`; it returns the library's adversarial
examples as a float tensor.  Only what the library's API forces differs between adapters.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import torch
from torch import nn

import advcourse.attacks as ac

with warnings.catch_warnings():  # the peers' import-time deprecation noise
    warnings.simplefilter("ignore")
    import foolbox as fb
    import torchattacks as ta
    from art.attacks.evasion import CarliniL2Method, DeepFool, ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

LIBRARIES = ("advcourse", "torchattacks", "foolbox", "art")


@dataclasses.dataclass(frozen=True)
class Settings:
    """The attack settings, identical for every library."""

    eps: float = 0.3  # L-inf radius (PGD, strong evaluation / AutoAttack)
    pgd_steps: int = 40
    pgd_alpha: float = 0.01  # absolute step size
    cw_binary_steps: int = 5
    cw_steps: int = 100  # optimiser iterations per binary-search step
    cw_lr: float = 0.05
    cw_c: float = 1.0  # initial trade-off constant
    cw_kappa: float = 0.0
    df_steps: int = 50  # maximum DeepFool iterations
    df_overshoot: float = 0.02
    df_candidates: int = 10
    aa_steps: int = 100  # iterations of APGD (and of AutoAttack's gradient attacks at the paper's budget)
    seed: int = 0


class Counted(nn.Module):
    """The model, counting the examples it is evaluated on (forward passes x batch rows) and
    recording every call as (rows, whether the input requires a gradient)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.rows = 0
        self.calls: list[tuple[int, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        self.calls.append((x.shape[0], torch.is_grad_enabled() and x.requires_grad))
        return self.model(x)


@dataclasses.dataclass
class Target:
    """The attacked model as each library wants it."""

    torch: Counted
    foolbox: object
    art: object


def make_target(model: nn.Module, input_shape=(1, 28, 28), num_classes: int = 10, device="cpu") -> Target:
    counted = Counted(model).eval()
    device = torch.device(device)
    art_classifier = PyTorchClassifier(model=counted, loss=nn.CrossEntropyLoss(), input_shape=input_shape,
                                       nb_classes=num_classes, clip_values=(0.0, 1.0),
                                       device_type="gpu" if device.type == "cuda" else "cpu")
    return Target(counted, fb.PyTorchModel(counted, bounds=(0.0, 1.0), device=device), art_classifier)


def _art(attack, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """ART works on numpy arrays; the conversions are part of its cost."""
    return torch.from_numpy(attack.generate(x.cpu().numpy(), y.cpu().numpy()))


def _foolbox(attack, t: Target, x, y, eps) -> torch.Tensor:
    _, clipped, _ = attack(t.foolbox, x, y, epsilons=eps)
    return clipped


# --- PGD-k, L-inf, random start ------------------------------------------------------------

def advcourse_pgd(t: Target, x, y, s: Settings):
    return ac.pgd(t.torch, x, y, eps=s.eps, alpha=s.pgd_alpha, steps=s.pgd_steps, random_start=True,
                  early_stop=True, generator=torch.Generator().manual_seed(s.seed))


def torchattacks_pgd(t: Target, x, y, s: Settings):
    return ta.PGD(t.torch, eps=s.eps, alpha=s.pgd_alpha, steps=s.pgd_steps, random_start=True)(x, y)


def foolbox_pgd(t: Target, x, y, s: Settings):
    attack = fb.attacks.LinfPGD(abs_stepsize=s.pgd_alpha, steps=s.pgd_steps, random_start=True)
    return _foolbox(attack, t, x, y, s.eps)


def art_pgd(t: Target, x, y, s: Settings):
    return _art(ProjectedGradientDescent(t.art, norm=np.inf, eps=s.eps, eps_step=s.pgd_alpha, max_iter=s.pgd_steps,
                                         num_random_init=1, batch_size=len(x), verbose=False), x, y)


# --- Carlini & Wagner L2 with binary search over c ------------------------------------------

def advcourse_cw(t: Target, x, y, s: Settings):
    return ac.cw_l2(t.torch, x, y, c=s.cw_c, kappa=s.cw_kappa, steps=s.cw_steps, lr=s.cw_lr,
                    binary_search_steps=s.cw_binary_steps)


def torchattacks_cw(t: Target, x, y, s: Settings):
    # no binary search in torchattacks: one run at the initial c with the same total iterations
    return ta.CW(t.torch, c=s.cw_c, kappa=s.cw_kappa, steps=s.cw_binary_steps * s.cw_steps, lr=s.cw_lr)(x, y)


def foolbox_cw(t: Target, x, y, s: Settings):
    attack = fb.attacks.L2CarliniWagnerAttack(binary_search_steps=s.cw_binary_steps, steps=s.cw_steps,
                                              stepsize=s.cw_lr, confidence=s.cw_kappa, initial_const=s.cw_c)
    return _foolbox(attack, t, x, y, None)


def art_cw(t: Target, x, y, s: Settings):
    return _art(CarliniL2Method(t.art, confidence=s.cw_kappa, learning_rate=s.cw_lr,
                                binary_search_steps=s.cw_binary_steps, max_iter=s.cw_steps,
                                initial_const=s.cw_c, batch_size=len(x), verbose=False), x, y)


# --- DeepFool (L2) ---------------------------------------------------------------------------

def advcourse_deepfool(t: Target, x, y, s: Settings):
    return ac.deepfool(t.torch, x, y, overshoot=s.df_overshoot, num_candidates=s.df_candidates, max_iter=s.df_steps)


def torchattacks_deepfool(t: Target, x, y, s: Settings):
    # torchattacks always uses every class as a candidate (10 on MNIST)
    return ta.DeepFool(t.torch, steps=s.df_steps, overshoot=s.df_overshoot)(x, y)


def foolbox_deepfool(t: Target, x, y, s: Settings):
    attack = fb.attacks.L2DeepFoolAttack(steps=s.df_steps, candidates=s.df_candidates, overshoot=s.df_overshoot,
                                         loss="logits")
    return _foolbox(attack, t, x, y, None)


def art_deepfool(t: Target, x, y, s: Settings):
    return _art(DeepFool(t.art, max_iter=s.df_steps, epsilon=s.df_overshoot, nb_grads=s.df_candidates,
                         batch_size=len(x), verbose=False), x, y)


# --- strong evaluation vs AutoAttack (L-inf) ------------------------------------------------

def advcourse_strong(t: Target, x, y, s: Settings):
    return ac.strong_evaluation(t.torch, x, y, eps=s.eps, batch_size=len(x),
                                generator=torch.Generator().manual_seed(s.seed)).x_adv


def torchattacks_autoattack(t: Target, x, y, s: Settings):
    # as shipped: its APGD, APGD-T and FAB-T run torchattacks' default of 10 iterations
    return ta.AutoAttack(t.torch, norm="Linf", eps=s.eps, version="standard", n_classes=10, seed=s.seed)(x, y)


def torchattacks_autoattack100(t: Target, x, y, s: Settings):
    """AutoAttack "standard" as the paper runs it, from torchattacks' own components: APGD-CE,
    APGD-T (9 targets), FAB-T (9 targets) at 100 iterations each, then Square with 5,000 queries;
    each on the images the previous ones left (``MultiAttack``), as ``ta.AutoAttack`` chains them."""
    m, kw = t.torch, dict(norm="Linf", eps=s.eps, seed=s.seed, n_restarts=1)
    return ta.MultiAttack([
        ta.APGD(m, loss="ce", steps=s.aa_steps, **kw),
        ta.APGDT(m, steps=s.aa_steps, n_classes=10, **kw),
        ta.FAB(m, steps=s.aa_steps, multi_targeted=True, n_classes=10, **kw),
        ta.Square(m, n_queries=5000, **kw),
    ])(x, y)


# --- APGD-CE vs PGD-CE with restarts (L-inf) ------------------------------------------------

def advcourse_apgd(t: Target, x, y, s: Settings):
    return ac.apgd(t.torch, x, y, eps=s.eps, steps=s.aa_steps, loss="ce",
                   generator=torch.Generator().manual_seed(s.seed))


def advcourse_pgd_restarts(t: Target, x, y, s: Settings):
    """The same iterations per restart as APGD, 5 restarts, Madry et al.'s step 2.5 eps / steps."""
    return ac.pgd(t.torch, x, y, eps=s.eps, steps=s.aa_steps, restarts=5, loss="ce", early_stop=True,
                  generator=torch.Generator().manual_seed(s.seed))


def torchattacks_apgd(t: Target, x, y, s: Settings):
    return ta.APGD(t.torch, norm="Linf", eps=s.eps, steps=s.aa_steps, loss="ce", n_restarts=1, seed=s.seed)(x, y)
