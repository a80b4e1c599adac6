"""Chapter 5 — C&W attacks and defensive distillation (Carlini & Wagner 2017; Papernot et al. 2016).

The chapter's networks, trained once and cached: a standard MnistCNN, teachers at a
temperature T and their distilled students (:func:`train_standard`, :func:`distill`), and
what distillation does to them (:func:`logit_scale`; the zero gradients are
:func:`advcourse.attacks.zero_gradient_fraction`). Then the experiments with the attacks:

* :func:`success_report`: success rate and mean distortion of one attack;
* :func:`objective_box_grid`: the seven objectives × three box methods (C&W Table III);
* :func:`c_sweep`: success and distortion against a *fixed* constant c (C&W Figure 2);
* :func:`target_cases`: best, average and worst case over the nine targets (C&W Table IV);
* :func:`transfer_vs_kappa`: transfer success against the confidence κ (C&W Figures 9–10);
* :func:`quantize` and :func:`greedy_repair`: 8-bit rounding and the greedy fix (C&W §V.C).

Conventions: images (N, 1, 28, 28) in [0, 1]; models return logits; an attack is
``attack(model, x, y_or_target) -> x_adv``; success rates are fractions in [0, 1].
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from ..attacks import cw_l2, cw_objective, distortion
from ..cache import load_or_train
from ..defenses import soft_labels, temperature_loss, train_distilled
from ..evaluate import eval_mode, logits, predict
from ..models import MnistCNN
from ..train import train

__all__ = ["Settings", "FAST", "FULL", "train_standard", "train_teacher", "distill", "logit_scale", "Report",
           "success_report", "correct_subset", "random_targets", "defence_report", "TargetCases", "rescale_c",
           "objective_box_grid", "c_sweep", "all_targets", "target_cases", "transfer_vs_kappa", "quantize",
           "greedy_repair", "to_boundary", "repair_report", "c_sweep_figure", "smallest_eps", "baseline_cases",
           "linf_oscillation"]


@dataclass(frozen=True)
class Settings:
    """Chapter 5's settings, shared by the chapter and its claim tests.

    The networks: a :class:`MnistCNN` with ``channels`` and ``hidden`` units, trained ``epochs``
    epochs with Adam (``lr``, ``batch_size``), distilled at each of ``temperatures``. The numbers
    of correctly classified test digits attacked in each experiment (``n_defence``, ``n_grid``,
    ``n_sweep``, ``n_cases``, ``n_transfer``); the attacks' settings (``cw`` for C&W L2: Adam steps
    per constant, learning rate, binary-search rounds, first constant; ``cw_linf``, ``cw_l0``,
    ``lbfgs``) and the confidences ``kappas`` of the transfer experiment. The baselines of Table IV:
    JSMA's largest fraction of pixels changed (``jsma_gamma``) and the grids of ε searched for
    FGSM (``fgsm_eps``) and the iterative gradient sign method (``igs_eps``).
    """

    channels: tuple = (8, 16)
    hidden: int = 64
    epochs: int = 3
    lr: float = 1e-2
    batch_size: int = 128
    temperatures: tuple = (1, 10, 100)
    n_defence: int = 10
    n_grid: int = 10
    n_sweep: int = 20
    n_cases: int = 3
    n_transfer: int = 20
    cw: dict = field(default_factory=lambda: dict(steps=100, lr=0.1, binary_search_steps=5, c=1e-2))
    cw_linf: dict = field(default_factory=lambda: dict(steps=50, lr=0.2, c=0.1, c_factor=4))
    cw_l0: dict = field(default_factory=lambda: dict(steps=30, lr=0.5, c=1.0, largest_c=16, c_factor=4))
    lbfgs: dict = field(default_factory=lambda: dict(search_steps=3, max_iter=30))
    kappas: tuple = (0, 10, 20, 30)  # the small fast-profile source cannot reach κ = 40
    jsma_gamma: float = 0.3  # up to 235 of 784 pixels: C&W's worst JSMA case changed 180
    fgsm_eps: tuple = tuple(k / 100 for k in range(1, 61))
    igs_eps: tuple = tuple(k / 50 for k in range(1, 26))

    def spec(self, *, seed: int, data: str) -> dict:
        """The settings that determine a trained network (its cache key), with the ``seed`` and a
        ``data`` tag naming the training images."""
        return {"channels": list(self.channels), "hidden": self.hidden, "epochs": self.epochs, "lr": self.lr,
                "batch_size": self.batch_size, "seed": seed, "data": data}

    def smoke(self) -> Settings:
        """The smoke profile's settings (CI): these settings with the work capped to seconds on a CPU."""
        # C&W at the fast profile's step size: ten steps of the full profile's 0.01 rarely succeed.
        return replace(self, epochs=1, temperatures=(1, 100), n_defence=3, n_grid=3, n_sweep=5, n_cases=2,
                       n_transfer=5, cw={**self.cw, "steps": 20, "lr": 0.1, "binary_search_steps": 2},
                       cw_linf={**self.cw_linf, "steps": 10}, cw_l0={**self.cw_l0, "steps": 5},
                       lbfgs=dict(search_steps=2, max_iter=5), kappas=(0, 20, 40))


#: The CPU profile (the embedded MNIST).
FAST = Settings()
#: The GPU profile (all of MNIST, the authors' attack settings).
FULL = Settings(channels=(32, 64), hidden=200, epochs=10, lr=3e-3, temperatures=(1, 2, 5, 10, 20, 50, 100),
                n_defence=100, n_grid=100, n_sweep=100, n_cases=20, n_transfer=100,
                cw=dict(steps=1000, lr=0.01, binary_search_steps=9, c=1e-3),
                cw_linf=dict(c=1e-5), cw_l0=dict(c=1e-3),  # the authors' defaults
                lbfgs=dict(search_steps=10, max_iter=100), kappas=tuple(range(0, 45, 5)))


# --- the networks: standard, teachers and distilled students ----------------------------

def _build(cfg: dict) -> nn.Module:
    torch.manual_seed(cfg["seed"])
    return MnistCNN(tuple(cfg["channels"]), cfg["hidden"])


def _train_at_temperature(name: str, x, y, spec: dict, temperature: float, device, progress: bool):
    """A network trained with cross-entropy of softmax(Z / T) on hard labels ``y`` (N,)."""
    config = {**spec, "n": len(x), "temperature": float(temperature)}

    def fit(model, cfg):
        T = cfg["temperature"]
        history = train(model, x, y, epochs=cfg["epochs"], lr=cfg["lr"], batch_size=cfg["batch_size"],
                        loss_fn=temperature_loss(T), seed=cfg["seed"], progress=progress, desc=f"{name} (T = {T:g})")
        return {k: history[k] for k in ("loss", "train_acc", "seconds")}

    return load_or_train(name, config, _build, fit, device=device)


def train_standard(x: torch.Tensor, y: torch.Tensor, spec: dict, *, device="cpu", progress: bool = True):
    """An undefended network, trained as usual (temperature 1). ``spec``: :meth:`Settings.spec`.
    Returns ``(model, meta)``."""
    return _train_at_temperature("ch05-standard", x, y, spec, 1.0, device, progress)


def train_teacher(x: torch.Tensor, y: torch.Tensor, spec: dict, temperature: float, *, device="cpu",
                  progress: bool = True):
    """Distillation's step 1: the teacher, trained with softmax(Z / T). At T = 1 this *is* the standard network."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if temperature == 1:
        return train_standard(x, y, spec, device=device, progress=progress)
    return _train_at_temperature("ch05-teacher", x, y, spec, temperature, device, progress)


def distill(x: torch.Tensor, y: torch.Tensor, spec: dict, temperature: float, *, device="cpu",
            progress: bool = True):
    """Defensive distillation at temperature T: teacher at T, its soft labels, student at T.

    ``x`` (N, 1, 28, 28) in [0, 1], ``y`` (N,) hard labels (used by the teacher only).
    Returns ``(student, meta)``; use the student at temperature 1, i.e. its logits as they are.
    """
    teacher, teacher_meta = train_teacher(x, y, spec, temperature, device=device, progress=progress)
    soft = soft_labels(teacher, x, temperature)
    config = {**spec, "n": len(x), "temperature": float(temperature), "teacher": teacher_meta["key"]}

    def fit(student, cfg):
        history = train_distilled(student, x, soft, cfg["temperature"], epochs=cfg["epochs"], lr=cfg["lr"],
                                  batch_size=cfg["batch_size"], seed=cfg["seed"], progress=progress)
        return {k: history[k] for k in ("loss", "seconds")}

    return load_or_train("ch05-student", config, _build, fit, device=device)


@torch.no_grad()
def logit_scale(model: nn.Module, x: torch.Tensor) -> float:
    """Mean over ``x`` of the largest logit minus the mean logit: how far the winning score
    stands out (a scale; a network with T-fold logits has a T-fold value)."""
    z = logits(model, x).cpu()
    return (z.max(1).values - z.mean(1)).mean().item()


# --- the attacks' outcomes ---------------------------------------------------------------

@dataclass
class Report:
    """An attack's outcome on N examples: ``success`` (N,) bool, ``dist`` (N,) distances."""

    success: torch.Tensor
    dist: torch.Tensor

    @property
    def rate(self) -> float:
        """Fraction of examples on which the attack reached its goal."""
        return self.success.float().mean().item()

    @property
    def mean_dist(self) -> float:
        """Mean distance over the successful examples (nan if none)."""
        return self.dist[self.success].mean().item() if self.success.any() else float("nan")


def success_report(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Callable, *,
                  targeted: bool = False, norm: str = "l2", x_adv: torch.Tensor | None = None) -> Report:
    """Run ``attack(model, x, y)`` (or take ``x_adv``) and measure success and distortion.

    ``y`` holds the true labels (untargeted: success means the prediction differs) or the
    targets (``targeted``: success means the prediction equals them).
    """
    if x_adv is None:
        x_adv = attack(model, x, y)
    pred, _ = predict(model, x_adv)
    success = pred == y if targeted else pred != y
    return Report(success.cpu(), distortion(x, x_adv, norm).cpu())


def correct_subset(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int):
    """The first ``n`` examples that ``model`` classifies correctly: ``(x, y)``."""
    pred, _ = predict(model, x)
    keep = (pred == y).nonzero().squeeze(1)[:n]
    return x[keep], y[keep]


def random_targets(y: torch.Tensor, num_classes: int = 10, generator: torch.Generator | None = None) -> torch.Tensor:
    """A target ≠ y for every example, uniformly among the other classes (C&W's average case)."""
    shift = torch.randint(1, num_classes, y.shape, generator=generator)
    return (y + shift) % num_classes


def defence_report(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: dict, n: int) -> dict:
    """Success of several attacks on the first ``n`` test examples ``model`` gets right.

    ``attacks`` maps a name to ``(attack, targeted)``; a targeted attack aims at
    (y + 1) mod 10, an untargeted one at any wrong class. Returns ``{name: Report}``.
    """
    xc, yc = correct_subset(model, x, y, n)
    out = {}
    for name, (attack, targeted) in attacks.items():
        goal = (yc + 1) % 10 if targeted else yc
        out[name] = success_report(model, xc, goal, attack, targeted=targeted)
    return out


def rescale_c(attack: functools.partial, factor: float) -> functools.partial:
    """The same C&W attack with its constants ``c`` (and ``largest_c``, if set) divided by
    ``factor``: for a network whose logits are ``factor`` times larger (exercise
    "Scaling the logits does not stop C&W")."""
    kw = dict(attack.keywords)
    for key in ("c", "largest_c"):
        if key in kw:
            kw[key] = kw[key] / factor
    return functools.partial(attack.func, *attack.args, **kw)


# --- the formulation: objectives, box constraints and the constant c -------------------

def objective_box_grid(model: nn.Module, x: torch.Tensor, target: torch.Tensor, objectives, boxes,
                       **cw_kwargs) -> dict:
    """Targeted :func:`cw_l2` for every (objective, box) pair: ``{(f, box): Report}`` (L2)."""
    out = {}
    for f in objectives:
        for box in boxes:
            attack = functools.partial(cw_l2, targeted=True, objective=f, box=box, **cw_kwargs)
            out[f, box] = success_report(model, x, target, attack, targeted=True)
    return out


def c_sweep(model: nn.Module, x: torch.Tensor, target: torch.Tensor, cs, **cw_kwargs) -> list[Report]:
    """Targeted :func:`cw_l2` with one fixed c per run (no binary search): a Report per c."""
    return [success_report(model, x, target,
                          functools.partial(cw_l2, targeted=True, c=float(c), binary_search_steps=1, **cw_kwargs),
                          targeted=True) for c in cs]


# --- best, average and worst case over the targets -------------------------------------

def all_targets(x: torch.Tensor, y: torch.Tensor, num_classes: int = 10):
    """Every (example, wrong class) pair: ``x`` repeated (N·(K−1), ...), targets, and the example index."""
    n = len(y)
    shift = torch.arange(1, num_classes).repeat(n)
    index = torch.arange(n).repeat_interleave(num_classes - 1)
    return x[index], (y[index] + shift) % num_classes, index


@dataclass
class TargetCases:
    """Result of :func:`target_cases`: ``cases[name] = (success rate, mean distortion)`` for
    "best", "average" and "worst"; the attacked pairs ``x`` (N·(K−1), ...), their ``targets``
    and ``x_adv``, with ``success`` (N·(K−1),)."""

    cases: dict
    x: torch.Tensor
    targets: torch.Tensor
    x_adv: torch.Tensor
    success: torch.Tensor


def target_cases(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Callable, norm: str,
                 num_classes: int = 10) -> TargetCases:
    """C&W's three ways to pick a target (§II.C, Table IV) for a targeted ``attack``.

    The attack runs once for every wrong class of every example. Per example, the *best
    case* is the easiest target (smallest distortion among the successful ones), the *worst
    case* the hardest (a failure if any target fails), the *average case* a target chosen
    uniformly at random — we report its expectation, the mean over all K − 1 targets, which
    is less noisy on a few examples than one draw. ``cases`` holds, for each,
    ``(success rate, mean distortion over the successes)``.
    """
    xs, ts, _ = all_targets(x, y, num_classes)
    x_adv = attack(model, xs, ts)
    rep = success_report(model, xs, ts, attack, targeted=True, norm=norm, x_adv=x_adv)
    ok = rep.success.view(len(y), num_classes - 1)
    dist = rep.dist.view(len(y), num_classes - 1)
    best = torch.where(ok, dist, torch.full_like(dist, float("inf"))).min(1).values
    worst = dist.max(1).values

    def summary(success, d):
        return (success.float().mean().item(), d[success].mean().item() if success.any() else float("nan"))

    cases = {"best": summary(best < float("inf"), best),
             "average": summary(ok.flatten(), dist.flatten()),  # expectation over a random target
             "worst": summary(ok.all(1), worst)}
    return TargetCases(cases, xs, ts, x_adv, rep.success)


# --- the baselines of Table IV -----------------------------------------------------------

def smallest_eps(attack: Callable, epsilons) -> Callable:
    """A targeted attack ``(model, x, target) -> x_adv`` that runs ``attack(model, x, target, eps)``
    for each ``eps`` of ``epsilons`` (ascending) and keeps, per example, the first success: C&W's
    search for the smallest ε of the gradient-sign baselines (a failure returns ``x``)."""
    epsilons = sorted(float(e) for e in epsilons)

    def run(model, x, target):
        x_adv, todo = x.clone(), torch.ones(len(x), dtype=torch.bool)
        for eps in epsilons:
            idx = todo.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            xa = attack(model, x[idx], target[idx], eps)
            ok = (predict(model, xa)[0] == target[idx]).cpu()
            x_adv[idx[ok]] = xa[ok]
            todo[idx[ok]] = False
        return x_adv

    return run


def baseline_cases(model: nn.Module, x: torch.Tensor, y: torch.Tensor, baselines: dict) -> dict:
    """C&W Table IV's earlier attacks on the same digits as :func:`target_cases`.

    ``baselines`` maps a name to ``(attack, norm, targeted)``. A targeted attack runs on every
    (digit, wrong class) pair and gets best, average and worst case; an untargeted one
    (DeepFool) runs once per digit and fills the best case only, as in the paper.
    Returns ``{name: {"best" | "average" | "worst": (success rate, mean distortion) or None}}``.
    """
    out = {}
    for name, (attack, norm, targeted) in baselines.items():
        if targeted:
            out[name] = target_cases(model, x, y, attack, norm).cases
        else:
            rep = success_report(model, x, y, attack, norm=norm)
            out[name] = {"best": (rep.rate, rep.mean_dist), "average": None, "worst": None}
    return out


# --- transferability -------------------------------------------------------------------

def transfer_vs_kappa(source: nn.Module, targets: dict, x: torch.Tensor, y: torch.Tensor, kappas,
                      **cw_kwargs) -> dict:
    """Untargeted :func:`cw_l2` with confidence κ on ``source``, evaluated on other models.

    Returns ``{"source": [...], name: [...]}``: for each κ the fraction of ``x`` that the
    examples crafted on ``source`` make each model misclassify.
    """
    out = {"source": [], **{name: [] for name in targets}}
    for kappa in kappas:
        x_adv = cw_l2(source, x, y, kappa=float(kappa), **cw_kwargs)
        for name, model in [("source", source), *targets.items()]:
            out[name].append((predict(model, x_adv)[0] != y).float().mean().item())
    return out


# --- discretisation --------------------------------------------------------------------

def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest 8-bit grey level: round(255 x) / 255 (still in [0, 1])."""
    return torch.round(x * 255) / 255


def greedy_repair(model: nn.Module, x_q: torch.Tensor, y: torch.Tensor, *, targeted: bool = False,
                  max_steps: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """A greedy search on the 8-bit lattice for examples that rounding made non-adversarial.

    ``x_q`` (N, ...) holds 8-bit images (multiples of 1/255). At each step, every example
    that is not yet adversarial moves the one pixel whose gradient promises the largest
    decrease of the C&W objective f6 by one grey level (±1/255, within [0, 1]). Returns the
    repaired images (still on the lattice) and the number of steps each example took (N,).
    """
    x_q = x_q.detach().clone()
    steps = torch.zeros(len(x_q), dtype=torch.long)
    step = 1 / 255
    with eval_mode(model):
        for _ in range(max_steps):
            xr = x_q.detach().requires_grad_(True)
            with torch.enable_grad():
                logits = model(xr)
                f = cw_objective(logits, y, "f6", targeted=targeted)
                (g,) = torch.autograd.grad(f.sum(), xr)
            pred = logits.detach().argmax(1)
            todo = pred != y if targeted else pred == y  # not adversarial yet
            if not todo.any():
                break
            # a move of −step·sign(g) changes f by about −step·|g|; skip moves that leave the box
            move = -torch.sign(g) * step
            allowed = ((x_q + move) >= 0) & ((x_q + move) <= 1) & (g != 0)
            score = torch.where(allowed, g.abs(), torch.zeros_like(g)).flatten(1)
            best = score.argmax(1)
            flat = x_q.flatten(1).clone()
            rows = todo.nonzero().squeeze(1)
            flat[rows, best[rows]] = (flat[rows, best[rows]] + move.flatten(1)[rows, best[rows]]).clamp(0, 1)
            x_q = quantize(flat.view_as(x_q))
            steps[rows.cpu()] += 1
    return x_q, steps


def to_boundary(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, goal: torch.Tensor, *,
                targeted: bool = True, steps: int = 20) -> torch.Tensor:
    """Move each adversarial example back towards ``x`` along the segment, as far as it stays
    adversarial (bisection, ``steps`` rounds): the point just past the decision boundary that
    a long minimal-distortion search converges to. Non-adversarial rows are returned as is."""
    def fooled(xa):
        pred, _ = predict(model, xa)
        return pred == goal if targeted else pred != goal

    lo = torch.zeros(len(x))          # fraction of the perturbation kept: lo fails (or is 0) ...
    hi = torch.ones(len(x))           # ... hi succeeds
    ok = fooled(x_adv).cpu()
    shape = (-1,) + (1,) * (x.ndim - 1)
    for _ in range(steps):
        mid = (lo + hi) / 2
        good = fooled(x + mid.view(shape).to(x) * (x_adv - x)).cpu()
        hi, lo = torch.where(good, mid, hi), torch.where(good, lo, mid)
    hi = torch.where(ok, hi, torch.ones_like(hi))
    return (x + hi.view(shape).to(x) * (x_adv - x)).clamp(0, 1)


def repair_report(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, goal: torch.Tensor, *,
                  targeted: bool = True, max_steps: int = 200) -> dict:
    """Round successful adversarial examples to 8 bits and repair the broken ones greedily.

    Only the examples on which ``x_adv`` already succeeds are considered. Returns the number
    considered, the fraction still adversarial after rounding and after the repair, the
    mean L2 distortion before rounding and after the repair, and the repair steps taken.
    """
    def fooled(xa):
        pred, _ = predict(model, xa)
        return pred == goal if targeted else pred != goal

    ok = fooled(x_adv)
    x, x_adv, goal = x[ok], x_adv[ok], goal[ok]
    x_q = quantize(x_adv)
    after_rounding = fooled(x_q)
    x_r, steps = greedy_repair(model, x_q, goal, targeted=targeted, max_steps=max_steps)
    after_repair = fooled(x_r)
    broken = ~after_rounding
    return {"n": int(ok.sum()), "rounded_ok": after_rounding.float().mean().item(),
            "repaired_ok": after_repair.float().mean().item(),
            "broken": int(broken.sum()),
            "steps": steps[broken].float().mean().item() if broken.any() else 0.0,
            "l2_continuous": distortion(x, x_adv, "l2").mean().item(),
            "l2_repaired": distortion(x, x_r, "l2").mean().item(),
            "on_lattice": bool(torch.equal(x_r, quantize(x_r))), "x_repaired": x_r}


# --- why a plain L∞ penalty oscillates (C&W §VI.C) ----------------------------------------

def linf_oscillation(penalty: str, *, steps: int = 60, lr: float = 0.02, c: float = 2.0,
                     tau: float = 0.45) -> torch.Tensor:
    """Gradient descent on a two-pixel toy, penalty(δ) + c·(1 − w·δ)⁺ with w = (0.9, 1.1), from
    δ = (0.6, 0.3): the path of δ, shape (steps + 1, 2).

    ``penalty="linf"`` is ‖δ‖∞, whose gradient touches only the largest |δ_i| — so the two
    pixels take turns being pushed down; ``penalty="tau"`` is C&W's Σ_i (|δ_i| − τ)⁺, which
    pushes every pixel above τ at once.
    """
    terms = {"linf": lambda d: d.abs().max(), "tau": lambda d: torch.relu(d.abs() - tau).sum()}
    if penalty not in terms:
        raise ValueError(f"penalty must be 'linf' or 'tau', got {penalty!r}")
    w = torch.tensor([0.9, 1.1])
    d = torch.tensor([0.6, 0.3], requires_grad=True)
    path = [d.detach().clone()]
    for _ in range(steps):
        loss = terms[penalty](d) + c * torch.relu(1 - w @ d)
        (g,) = torch.autograd.grad(loss, d)
        with torch.no_grad():
            d -= lr * g
        path.append(d.detach().clone())
    return torch.stack(path)


# --- figures -----------------------------------------------------------------------------

def c_sweep_figure(cs, reports: list[Report], title: str | None = None):
    """Success rate (left axis) and mean L2 of the successes (right axis) against c (log scale)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.plot(cs, [100 * r.rate for r in reports], "o-", color="C0", label="success")
    ax.set_xscale("log")
    ax.set_xlabel("constant c (fixed, no binary search)")
    ax.set_ylabel("success rate (%)", color="C0")
    ax.set_ylim(-3, 103)
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(cs, [r.mean_dist for r in reports], "s--", color="C3", label="mean L2")
    ax2.set_ylabel("mean L2 distortion of the successes", color="C3")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
