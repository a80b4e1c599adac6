"""Chapter 2 — the fast gradient sign method and adversarial training (Goodfellow et al. 2015).

The experiments of the chapter as small functions: the training recipes of the
two profiles, the MLPs trained with clean, FGSM or noisy inputs (cached), an
ensemble, the ε sweep along the FGSM direction (the paper's Figure 4), the
one-step attacks under two norms, a network with sigmoid outputs for the rubbish-class
test, and, in the full profile, a CIFAR-10 network.

Images are float tensors (N, C, H, W) in [0, 1]; models return logits (N, K).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import fgm, fgsm, input_gradient, robust_accuracy
from ..cache import load_or_train
from ..evaluate import accuracy, attack_report, eval_mode
from ..models import MLP, Ensemble, cifar_convnet
from ..runtime import device_of
from ..train import Shuffled, fit, train

TRAININGS = ("standard", "fgsm", "sign_noise", "uniform_noise")


# --- the recipes: one per profile, shared by the chapter and its claim tests -------

@dataclass(frozen=True)
class Recipe:
    """How the chapter trains its MNIST networks.

    ``unit``/``hidden``/``k``/``dropout`` define the MLP; ``epochs``, ``batch_size`` and
    ``lr`` (Adam) the optimisation; ``eps`` is the max-norm budget of every attack and
    of adversarial training, ``clean_weight`` the α of the mixed objective (eq. 6);
    ``n_val`` training images are held out for early stopping. ``ensemble`` members,
    ``pgd_steps`` and ``n_attack`` (test digits for the iterative attacks) size the
    remaining experiments; ``n_sweep`` test digits go through the ε sweep. The full profile's
    CIFAR-10 network trains ``cifar_epochs`` epochs.
    """

    unit: str = "maxout"
    hidden: tuple = (240, 240)
    k: int = 2
    dropout: float = 0.0
    epochs: int = 12
    batch_size: int = 128
    lr: float = 1e-3
    eps: float = 0.25
    clean_weight: float = 0.5
    n_val: int = 1000
    ensemble: int = 5
    pgd_steps: int = 20
    n_attack: int = 1000
    n_sweep: int = 500
    cifar_epochs: int = 30

    def config(self) -> dict:
        """The settings that determine a trained model (the cache key), as plain JSON types."""
        keys = ("unit", "hidden", "k", "dropout", "epochs", "batch_size", "lr", "eps", "clean_weight")
        cfg = {key: asdict(self)[key] for key in keys}
        cfg["hidden"] = list(cfg["hidden"])
        return cfg

    def smoke(self) -> Recipe:
        """The smoke profile's settings (CI): these settings with the work capped to seconds on a CPU."""
        return replace(self, epochs=1, n_val=100, ensemble=2, pgd_steps=3, n_attack=100, n_sweep=100,
                       cifar_epochs=1)


#: The CPU profile: the embedded 8,000 training digits, a 240-240 maxout network, a few epochs.
FAST = Recipe()
#: The GPU profile: all of MNIST and the paper's wider network (1600 maxout units per layer).
FULL = Recipe(hidden=(1600, 1600), dropout=0.2, epochs=60, n_val=10_000, ensemble=12,
              pgd_steps=40, n_attack=10_000, n_sweep=2000)


def holdout(x: torch.Tensor, y: torch.Tensor, n_val: int, seed: int = 0):
    """Split a *training* set into (x_fit, y_fit, x_val, y_val), ``n_val`` random examples for validation."""
    if not 0 < n_val < len(x):
        raise ValueError(f"n_val must be between 1 and {len(x) - 1}, got {n_val}")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    fit, val = order[n_val:], order[:n_val]
    return x[fit], y[fit], x[val], y[val]


def sample(x: torch.Tensor, y: torch.Tensor, n: int, seed: int = 0):
    """``n`` examples drawn at random without replacement (a sample that does not depend on the data order)."""
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx], y[idx]


# --- training with clean, adversarial or noisy inputs --------------------------------

def perturbation(training: str, eps: float, seed: int = 0) -> Callable | None:
    """The input change used in training, as ``f(model, x, y) -> x'`` (None for "standard").

    "fgsm": x + ε·sign(∇ₓJ), recomputed for the current model at every step (§6);
    "sign_noise": x + ε·s with independent random signs s ∈ {−1, 1};
    "uniform_noise": x + u with u ~ U(−ε, ε) per pixel. Results are clipped to [0, 1].
    """
    if training not in TRAININGS:
        raise ValueError(f"training must be one of {TRAININGS}, got {training!r}")
    if training == "standard":
        return None
    if training == "fgsm":
        return lambda model, x, y: fgsm(model, x, y, eps)
    gen = torch.Generator().manual_seed(seed)

    def noisy(model, x, y):
        u = torch.rand(x.shape, generator=gen).to(x.device)
        noise = eps * (u.round() * 2 - 1) if training == "sign_noise" else eps * (2 * u - 1)
        return (x + noise).clamp(0, 1)

    return noisy


def train_mlp(recipe: Recipe, x: torch.Tensor, y: torch.Tensor, x_val: torch.Tensor | None,
              y_val: torch.Tensor | None, *,
              training: str = "standard", data_tag: str, seed: int = 0, device="cpu", progress: bool = True):
    """Train (or load from the cache) one MLP of the chapter on images ``x`` in [0, 1].

    Every model uses the mixed objective α·J(x) + (1 − α)·J(x') with x' from
    :func:`perturbation` (plain J for "standard") and early stopping: the epoch with the
    best validation accuracy on (``x_val``, ``y_val``) is kept — accuracy on FGSM
    examples for "fgsm" training (§6), on clean examples otherwise. Without validation data
    (``x_val=None``) it trains for ``recipe.epochs`` and keeps the last epoch.
    Returns ``(model, meta)``; ``meta["metrics"]`` holds the per-epoch history.
    """
    config = {"recipe": recipe.config(), "training": training, "data": data_tag, "n": len(x),
              "n_val": 0 if x_val is None else len(x_val), "seed": seed}
    attack = lambda m, xb, yb: fgsm(m, xb, yb, recipe.eps)  # noqa: E731

    def build(cfg):
        torch.manual_seed(cfg["seed"])
        return MLP(x[0].numel(), recipe.hidden, 10, unit=recipe.unit, k=recipe.k, dropout=recipe.dropout)

    def fit(model, cfg):
        history = train(model, x, y, epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr,
                        adversary=perturbation(training, recipe.eps, seed + 1), clean_weight=recipe.clean_weight,
                        x_val=x_val, y_val=y_val,
                        val_adversary=attack if training == "fgsm" and x_val is not None else None,
                        keep_best=x_val is not None, seed=seed, progress=progress,
                        desc=f"{recipe.unit} MLP, {training}")
        keys = ("loss", "train_acc", "val_acc", "val_adv_acc", "best_epoch", "seconds")
        return {k: history[k] for k in keys}

    return load_or_train(f"ch02-mlp-{training}", config, build, fit, device=device)


def train_ensemble(recipe: Recipe, x, y, x_val, y_val, *, data_tag: str, seed: int = 0, device="cpu",
                   progress: bool = True) -> Ensemble:
    """``recipe.ensemble`` standard MLPs with seeds ``seed, seed + 1, …`` (each cached; member 0
    is the standard model of :func:`train_mlp`), averaged by :class:`Ensemble`."""
    members = [train_mlp(recipe, x, y, x_val, y_val, training="standard", data_tag=data_tag, seed=seed + i,
                         device=device, progress=progress)[0] for i in range(recipe.ensemble)]
    return Ensemble(members).eval()


# --- the rubbish class with sigmoid outputs (the paper's appendix) -------------------

class SigmoidOutputs(nn.Module):
    """A classifier read through ten independent sigmoid units instead of a softmax.

    ``forward`` returns the wrapped network's logits (N, K) unchanged, so attacks and accuracy see
    the same model; ``probabilities`` returns σ(logits) (N, K), each in (0, 1) and *not* summing to
    one: every class is a yes/no detector of its own. :func:`advcourse.evaluate.probabilities`
    (and with it the rubbish-class test) uses them.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))


def train_sigmoid_mlp(recipe: Recipe, x: torch.Tensor, y: torch.Tensor, *, data_tag: str, seed: int = 0,
                      device="cpu", progress: bool = True):
    """Train (or load from the cache) the chapter's standard MLP with sigmoid outputs (appendix).

    The network of :func:`train_mlp` wrapped in :class:`SigmoidOutputs`, each output trained as a
    one-vs-rest logistic regression: binary cross-entropy against the one-hot label, summed over
    the ten classes. ``recipe.epochs`` epochs on images ``x`` (N, 1, 28, 28) in [0, 1], labels
    ``y`` (N,), no validation, last epoch kept. Returns ``(model, meta)``.
    """
    config = {"recipe": recipe.config(), "outputs": "sigmoid", "data": data_tag, "n": len(x), "seed": seed}

    def build(cfg):
        torch.manual_seed(cfg["seed"])
        return SigmoidOutputs(MLP(x[0].numel(), recipe.hidden, 10, unit=recipe.unit, k=recipe.k,
                                  dropout=recipe.dropout))

    def step(model, batch):
        xb, yb = batch
        logits = model(xb)
        target = F.one_hot(yb, logits.shape[1]).to(logits.dtype)
        loss = F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / len(xb)
        return loss, {"train_acc": (logits.argmax(1) == yb).sum().item()}

    def train_it(model, cfg):
        history = fit(model, Shuffled(x, y, batch_size=recipe.batch_size, seed=seed), step, epochs=recipe.epochs,
                      lr=recipe.lr, progress=progress, desc=f"{recipe.unit} MLP, sigmoid outputs")
        return {k: history[k] for k in ("loss", "train_acc", "seconds")}

    return load_or_train("ch02-mlp-sigmoid", config, build, train_it, device=device)


# --- does adversarial training regularise? The ablation of the setup ------------------

def train_recorded(recipe: Recipe, x, y, x_val, y_val, x_test, y_test, *, training: str = "standard",
                   data_tag: str, seed: int = 0, device="cpu", progress: bool = True):
    """Train one MLP like :func:`train_mlp` for all ``recipe.epochs`` epochs, recording after
    each epoch the clean and FGSM accuracy on the validation digits (``val_acc``,
    ``val_adv_acc``) and on the test digits (``test_acc``, ``test_adv_acc``).

    The validation curves choose an epoch (early stopping on either of them); the test curves are
    only *read off* at the chosen epoch, never used to choose. Returns ``(model, meta)`` with the
    model at its last epoch and the per-epoch lists in ``meta["metrics"]``.
    """
    config = {"recipe": recipe.config(), "training": training, "data": data_tag, "n": len(x),
              "n_val": len(x_val), "n_test": len(x_test), "seed": seed}
    attack = lambda m, xb, yb: fgsm(m, xb, yb, recipe.eps)  # noqa: E731
    adversary = perturbation(training, recipe.eps, seed + 1)

    def build(cfg):
        torch.manual_seed(cfg["seed"])
        return MLP(x[0].numel(), recipe.hidden, 10, unit=recipe.unit, k=recipe.k, dropout=recipe.dropout)

    def step(model, batch):  # the mixed objective of eq. 6, as in advcourse.train.train
        xb, yb, *adv = batch
        loss = F.cross_entropy(model(xb), yb)
        if adv:
            loss = recipe.clean_weight * loss + (1 - recipe.clean_weight) * F.cross_entropy(model(adv[0]), yb)
        return loss

    def validate(model):
        return {"val_acc": accuracy(model, x_val, y_val), "val_adv_acc": robust_accuracy(model, x_val, y_val, attack),
                "test_acc": accuracy(model, x_test, y_test),
                "test_adv_acc": robust_accuracy(model, x_test, y_test, attack)}

    def train_it(model, cfg):
        with_adv = (lambda m, b: (*b, adversary(m, *b).detach())) if adversary is not None else None
        history = fit(model, Shuffled(x, y, batch_size=recipe.batch_size, seed=seed), step, epochs=recipe.epochs,
                      lr=recipe.lr, adversary=with_adv, validate=validate, progress=progress,
                      desc=f"{recipe.unit} MLP, {training}, recorded")
        return {k: history[k] for k in ("loss", "val_acc", "val_adv_acc", "test_acc", "test_adv_acc", "seconds")}

    return load_or_train(f"ch02-recorded-{training}", config, build, train_it, device=device)


def stopped(metrics: dict, on: str) -> dict:
    """Early stopping read off recorded curves: the epoch with the best validation accuracy,
    clean (``on="clean"``) or under FGSM (``on="fgsm"``), and the test errors at that epoch.

    Returns ``epoch`` (0-based), ``clean`` and ``fgsm`` (test error rates in [0, 1])."""
    if on not in ("clean", "fgsm"):
        raise ValueError(f"on must be 'clean' or 'fgsm', got {on!r}")
    curve = metrics["val_acc" if on == "clean" else "val_adv_acc"]
    best = max(range(len(curve)), key=curve.__getitem__)
    return {"epoch": best, "clean": 1 - metrics["test_acc"][best], "fgsm": 1 - metrics["test_adv_acc"][best]}


def retrain_all(recipe: Recipe, x, y, epochs: int, *, training: str = "standard", data_tag: str, seed: int = 0,
                device="cpu", progress: bool = True):
    """The paper's last step: retrain on *all* training digits ``x`` (validation ones included) for
    the number of ``epochs`` early stopping chose, without validation. Returns ``(model, meta)``."""
    if epochs < 1:
        raise ValueError(f"epochs must be positive, got {epochs}")
    return train_mlp(replace(recipe, epochs=epochs), x, y, None, None, training=training, data_tag=data_tag,
                     seed=seed, device=device, progress=progress)


def ablation_variants(recipe: Recipe, dropout: float = 0.5) -> dict:
    """The chapter's two variants of ``recipe`` for :func:`ablation`: twice the epochs, then twice
    the epochs with ``dropout`` after each hidden layer, as ``{setup name: Recipe}``."""
    long = 2 * recipe.epochs
    return {f"{long} epochs": replace(recipe, epochs=long),
            f"{long} epochs, dropout {dropout}": replace(recipe, epochs=long, dropout=dropout)}


def ablation(variants: dict, x_fit, y_fit, x_val, y_val, x_test, y_test, *, data_tag: str, seed: int = 0,
             device="cpu", progress: bool = True) -> list[dict]:
    """Clean and FGSM test error of a standard and an adversarially trained MLP under each of
    ``variants`` (``{setup name: Recipe}``), then under the last one retrained on all training
    digits (fit + validation) for the epochs early stopping chose — the paper's protocol (§6).

    Each variant records its curves (:func:`train_recorded`) and stops early on the clean
    validation error (standard net) and on the FGSM validation error (adversarially trained net,
    as the paper), the latter also on the clean one (``adv_clean_stop``). Returns one dict per
    setup: ``setup``, ``std``, ``adv`` and ``adv_clean_stop`` (:func:`stopped` dicts: ``epoch``,
    test error rates ``clean`` and ``fgsm`` in [0, 1]; ``adv_clean_stop`` is None for the retrained row).
    """
    if not variants:
        raise ValueError("variants must name at least one Recipe")
    kw = dict(data_tag=data_tag, seed=seed, device=device, progress=progress)
    rows = []
    for name, r in variants.items():
        std = train_recorded(r, x_fit, y_fit, x_val, y_val, x_test, y_test, training="standard", **kw)[1]["metrics"]
        adv = train_recorded(r, x_fit, y_fit, x_val, y_val, x_test, y_test, training="fgsm", **kw)[1]["metrics"]
        rows.append({"setup": name, "recipe": r, "std": stopped(std, "clean"), "adv": stopped(adv, "fgsm"),
                     "adv_clean_stop": stopped(adv, "clean")})
    last = rows[-1]
    x_all, y_all = torch.cat([x_fit, x_val]), torch.cat([y_fit, y_val])
    attack = lambda m, a, b: fgsm(m, a, b, last["recipe"].eps)  # noqa: E731
    final = {}
    for training, part in (("standard", "std"), ("fgsm", "adv")):
        model = retrain_all(last["recipe"], x_all, y_all, last[part]["epoch"] + 1, training=training, **kw)[0]
        final[part] = {"epoch": last[part]["epoch"], "clean": 1 - accuracy(model, x_test, y_test),
                       "fgsm": 1 - robust_accuracy(model, x_test, y_test, attack)}
    rows.append({"setup": f"{last['setup']}, retrained on all {len(x_all):,} digits", "recipe": last["recipe"],
                 **final, "adv_clean_stop": None})
    return rows


# --- measuring attacks ---------------------------------------------------------------

def random_signs(eps: float, generator: torch.Generator) -> Callable:
    """An "attack" that adds ε times independent random signs to every pixel (a control)."""
    def attack(model, x, y):
        s = torch.randint(0, 2, x.shape, generator=generator).to(x) * 2 - 1
        return (x + eps * s).clamp(0, 1)
    return attack


def one_step_attacks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_values, *,
                     generator: torch.Generator) -> dict:
    """Three one-step perturbations of size ε, for each ε in ``eps_values``:

    * FGSM, the steepest step of the linearised loss in the max-norm ball;
    * FGM, the steepest step in the L2 ball of radius ε·√d — as long as the sign step;
    * the gradient itself scaled to a largest pixel change of ε (same max-norm as FGSM);
    * random signs ±ε (same norms as FGSM, no alignment with the gradient).

    Returns ``{name: {"error": [...], "linf": [...], "l2": [...]}}`` (mean norms of x' − x).
    """
    d = x[0].numel()
    methods = {"FGSM (L∞ sign step)": lambda e: (lambda m, a, b: fgsm(m, a, b, e)),
               "FGM (L2 step, length ε√d)": lambda e: (lambda m, a, b: fgm(m, a, b, e * math.sqrt(d))),
               "gradient scaled to max-norm ε": scaled_gradient_step,
               "random signs ±ε": lambda e: random_signs(e, generator)}
    out = {name: {"error": [], "linf": [], "l2": []} for name in methods}
    for eps in eps_values:
        for name, make in methods.items():
            x_adv, rep = attack_report(model, x, y, make(eps))
            delta = (x_adv - x).flatten(1)
            out[name]["error"].append(rep.error)
            out[name]["linf"].append(delta.abs().amax(1).mean().item())
            out[name]["l2"].append(delta.norm(dim=1).mean().item())
    return out


def agreement(source: nn.Module, others: dict, x: torch.Tensor, y: torch.Tensor, eps: float) -> dict:
    """The paper's §8 study of *why* adversarial examples transfer: FGSM examples crafted on
    ``source`` at ``eps``, kept where they fool it, then classified by each of ``others``
    (``{name: model}``).

    Returns ``n`` (examples that fool the source) and, per other model, ``same`` (the fraction
    whose prediction equals the source's wrong class) and ``same_when_wrong`` (the same fraction
    among the examples the other model also gets wrong); for each pair of other models ``(a, b)``,
    ``pairs[a, b]``: how often ``b`` gives ``a``'s class where both are wrong. Fractions in [0, 1].
    """
    x_adv = fgsm(source, x, y, eps)
    with eval_mode(source), torch.no_grad():
        src = source(x_adv.to(device_of(source))).argmax(1).cpu()
    fooled = src != y
    if not fooled.any():
        raise ValueError("FGSM fools the source model on none of the examples; nothing to compare")
    preds = {}
    for name, model in others.items():
        with eval_mode(model), torch.no_grad():
            preds[name] = model(x_adv[fooled].to(device_of(model))).argmax(1).cpu()
    yf, sf = y[fooled], src[fooled]
    rate = lambda hit, where: (hit & where).sum().item() / max(where.sum().item(), 1)  # noqa: E731
    out = {"n": int(fooled.sum()), "same": {}, "same_when_wrong": {}, "pairs": {}}
    for name, p in preds.items():
        out["same"][name] = (p == sf).float().mean().item()
        out["same_when_wrong"][name] = rate(p == sf, p != yf)
    for a in preds:
        for b in preds:
            if a != b:
                out["pairs"][a, b] = rate(preds[a] == preds[b], (preds[a] != yf) & (preds[b] != yf))
    return out


# --- the ε sweep along the FGSM direction (Figure 4) ------------------------------------

def fgsm_direction(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """sign(∇ₓJ(θ, x, y)) for each example, same shape as ``x`` (N, ...), entries in {−1, 0, 1}."""
    return input_gradient(model, x, y).sign()


def scaled_gradient_step(eps: float) -> Callable:
    """An attack ``(model, x, y) -> x'`` that steps along the raw gradient, scaled so that its
    largest pixel change is ε: x' = clip(x + ε·g/‖g‖∞) — the L2 direction in the max-norm budget."""
    def attack(model, x, y):
        g = input_gradient(model, x, y)
        scale = g.flatten(1).abs().amax(1).clamp_min(1e-30).view(-1, *([1] * (x.ndim - 1)))
        return (x + eps * g / scale).clamp(0, 1)
    return attack


def logit_sweep(model: nn.Module, x: torch.Tensor, y: int, eps_values: torch.Tensor) -> dict:
    """The logits along x + ε·sign(∇ₓJ) for one image ``x`` (C, H, W) with label ``y``.

    As in the paper's Figure 4, the inputs are *not* clipped to [0, 1]: for large |ε|
    they leave the image box. Returns ``eps`` (E,), ``logits`` (E, K) and ``images`` (E, C, H, W).
    """
    direction = fgsm_direction(model, x[None], torch.tensor([y]))[0]
    eps_values = torch.as_tensor(eps_values, dtype=x.dtype)
    images = x[None] + eps_values.view(-1, *([1] * x.ndim)) * direction[None]
    device = device_of(model)
    with eval_mode(model), torch.no_grad():
        logits = model(images.to(device)).cpu()
    return {"eps": eps_values, "logits": logits, "images": images}


def linear_r2(sweep: dict, lo: float, hi: float) -> float:
    """How straight the logits of a sweep are on ε ∈ [lo, hi]: the share of their variance
    explained by one straight line per logit (pooled R² in [0, 1]; 1 = exactly linear).

    A model whose logits stay close to linear along the FGSM direction is one for which
    the single linearised step of FGSM is already (almost) the best step.
    """
    keep = (sweep["eps"] >= lo) & (sweep["eps"] <= hi)
    e, z = sweep["eps"][keep].double(), sweep["logits"][keep].double()
    if len(e) < 3:
        raise ValueError(f"need at least 3 grid points in [{lo}, {hi}], got {len(e)}")
    design = torch.stack([torch.ones_like(e), e], dim=1)
    coef = torch.linalg.lstsq(design, z).solution
    residual = (z - design @ coef).pow(2).sum()
    total = (z - z.mean(0)).pow(2).sum()
    return (1 - residual / total).item() if total > 0 else 1.0


def linearity(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, points: int = 26) -> float:
    """Mean over the examples (N, ...) of :func:`linear_r2` on ε ∈ [0, ``eps``]: how close to
    linear the logits are along each example's own FGSM direction, within the attack budget."""
    grid = torch.linspace(0, eps, points)
    return sum(linear_r2(logit_sweep(model, xi, int(yi), grid), 0, eps) for xi, yi in zip(x, y)) / len(x)


def sweep_errors(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_values: torch.Tensor,
                 batch_size: int = 8192) -> torch.Tensor:
    """Misclassification along each example's own FGSM direction: bool (N, E),
    entry [n, e] true if x_n + ε_e·sign(∇ₓJ(x_n)) is classified wrongly (no clipping)."""
    direction = fgsm_direction(model, x, y)
    eps_values = torch.as_tensor(eps_values, dtype=x.dtype)
    shape = (1, -1, *([1] * (x.ndim - 1)))
    images = (x[:, None] + eps_values.view(shape) * direction[:, None]).flatten(0, 1)
    device = device_of(model)
    with eval_mode(model), torch.no_grad():
        pred = torch.cat([model(b.to(device)).argmax(1).cpu() for b in images.split(batch_size)])
    return pred.view(len(x), len(eps_values)) != y.view(-1, 1)


def wide_ranges(errors: torch.Tensor) -> dict:
    """Summarise ``sweep_errors`` on a grid of ε > 0 (N, E): per example, the first grid point
    that fools the model and whether every larger ε fools it too.

    Returns ``fooled`` (fraction of examples fooled somewhere on the grid), ``stays``
    (of those, the fraction fooled at every ε beyond the first) and ``wrong_share``
    (mean fraction of the grid on which an example is misclassified).
    """
    fooled = errors.any(1)
    first = errors.float().argmax(1)
    after = torch.arange(errors.shape[1]).view(1, -1) >= first.view(-1, 1)
    stays = (errors | ~after).all(1) & fooled
    return {"fooled": fooled.float().mean().item(),
            "stays": (stays.sum() / fooled.sum().clamp_min(1)).item(),
            "wrong_share": errors.float().mean().item()}


# --- figures -------------------------------------------------------------------------

def plot_sweep(sweep: dict, label: int, ax=None):
    """The ten logits against ε (Figure 4, left); the true class drawn thick."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))
    eps, z = sweep["eps"].numpy(), sweep["logits"].numpy()
    for c in range(z.shape[1]):
        ax.plot(eps, z[:, c], lw=2.5 if c == label else 1.1, label=str(c),
                color=f"C{c}", zorder=3 if c == label else 2)
    wrong = sweep["logits"].argmax(1) != label
    ax.fill_between(eps, 0, 1, where=wrong.numpy(), transform=ax.get_xaxis_transform(),
                    color="0.85", zorder=0, label="misclassified")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("ε (step along sign(∇ₓJ))")
    ax.set_ylabel("logit")
    ax.legend(ncol=2, fontsize=7, frameon=False, bbox_to_anchor=(1.0, 1.0), loc="upper left")
    return ax


def plot_filters(models: dict, units: int = 8, pieces: int = 2):
    """First-layer filters of several MLPs (the paper's Figure 3): per model, ``units``
    hidden units side by side, one row per maxout piece, each on its own signed colour scale."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(models), 1, figsize=(1.0 * units, 1.15 * pieces * len(models) + 0.3),
                             squeeze=False)
    for ax, (name, model) in zip(axes[:, 0], models.items()):
        w = model.first_layer_filters()[:units, :pieces].cpu()  # (units, pieces, 784)
        w = w / w.abs().amax(dim=2, keepdim=True).clamp_min(1e-12)
        side = int(math.isqrt(w.shape[2]))
        tiles = w.view(w.shape[0], w.shape[1], side, side)
        mosaic = tiles.permute(1, 2, 0, 3).reshape(w.shape[1] * side, w.shape[0] * side)
        ax.imshow(mosaic.numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


# --- CIFAR-10 (the full profile only) ---------------------------------------------------

def train_cifar(cifar, *, epochs: int = 30, lr: float = 1e-3, seed: int = 0, device="cpu", progress: bool = True):
    """Train (or load) :func:`cifar_convnet` on ``cifar`` (an ``ImageData``); returns (model, meta)."""
    config = {"data": cifar.source, "n": len(cifar.x_train), "epochs": epochs, "lr": lr, "seed": seed, "width": 64}

    def build(cfg):
        torch.manual_seed(cfg["seed"])
        return cifar_convnet(cfg["width"])

    def fit(model, cfg):
        history = train(model, cifar.x_train, cifar.y_train, epochs=cfg["epochs"], lr=cfg["lr"],
                        seed=cfg["seed"], progress=progress, desc="CIFAR-10 conv net")
        return {k: history[k] for k in ("loss", "train_acc", "seconds")}

    return load_or_train("ch02-cifar-convnet", config, build, fit, device=device)


__all__ = ["Recipe", "FAST", "FULL", "TRAININGS", "holdout", "sample", "perturbation", "train_mlp",
           "train_ensemble", "SigmoidOutputs", "train_sigmoid_mlp", "train_recorded", "stopped", "retrain_all",
           "ablation_variants", "ablation",
           "random_signs", "one_step_attacks", "agreement", "fgsm_direction", "scaled_gradient_step",
           "logit_sweep", "linear_r2", "linearity", "sweep_errors", "wide_ranges", "plot_sweep", "plot_filters",
           "train_cifar"]
