"""Chapter 3 — intriguing properties: blind spots found by L-BFGS (Szegedy et al. 2014).

The experiments of the chapter as small functions:

* §3, units against directions: the test images that most excite a hidden unit or a random
  direction of a layer, and how pure their labels are;
* §4.1–4.2, the paper's MNIST models (FC10(λ), FC100-100-10, FC200-200-10, AE400-10, and the
  models of Table 3 trained on disjoint halves P1 / P2), trained once and cached; their minimal
  adversarial examples found by box-constrained L-BFGS; the error they cause on the other models
  against Gaussian noise;
* §4.3, instability: upper bounds on each layer's Lipschitz constant from operator norms,
  against the stretching actually observed;
* the two views: along the adversarial direction, how wide the misclassified interval is.

Images are (N, 1, 28, 28) tensors in [0, 1]; labels (N,) int64. Distortions are the paper's
sqrt(Σ r_i² / n), the root-mean-square change per pixel, in [0, 1]
(``advcourse.attacks.distortion(x, x_adv, "rms")``).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import distortion, lbfgs_untargeted
from ..cache import load_or_train
from ..evaluate import eval_mode, predict
from ..models.fc import ACTIVATIONS, AutoencoderClassifier, build
from ..runtime import device_of
from ..train import Shuffled, fit, train


@dataclass(frozen=True)
class Settings:
    """Chapter 3's settings, shared by the chapter and its claim tests.

    Epochs of the Table 1 models (``epochs_fc10`` for FC10(λ), ``epochs_fc`` for the deeper
    networks, ``epochs_ae`` for AE400-10) and of the Table 3 models (``subset_epochs``);
    ``n_attack`` test images attacked; the L-BFGS effort (``lbfgs_search_steps`` values of c,
    ``lbfgs_max_iter`` iterations each).
    """

    epochs_fc10: int = 10
    epochs_fc: int = 20
    epochs_ae: int = 10
    subset_epochs: int = 20
    n_attack: int = 40
    lbfgs_search_steps: int = 6
    lbfgs_max_iter: int = 40

    @property
    def epochs(self) -> dict:
        """The epochs of :func:`train_table1`: {"FC10": …, "FC": …, "AE": …}."""
        return {"FC10": self.epochs_fc10, "FC": self.epochs_fc, "AE": self.epochs_ae}

    @property
    def lbfgs(self) -> dict:
        """Keyword arguments of :func:`minimal_adversarial` for the L-BFGS effort."""
        return {"search_steps": self.lbfgs_search_steps, "max_iter": self.lbfgs_max_iter}

    def smoke(self) -> Settings:
        """The smoke profile's settings (CI): these settings with the work capped to seconds on a CPU."""
        # Small networks on 512 digits: enough epochs that they classify and L-BFGS finds minimal examples.
        return replace(self, epochs_fc10=5, epochs_fc=10, epochs_ae=5, subset_epochs=5, n_attack=16,
                       lbfgs_search_steps=3, lbfgs_max_iter=10)


#: The CPU profile (the embedded MNIST).
FAST = Settings()
#: The GPU profile (all of MNIST, the paper's effort).
FULL = Settings(epochs_fc10=30, epochs_fc=60, epochs_ae=40, subset_epochs=60, n_attack=300,
                lbfgs_search_steps=10, lbfgs_max_iter=100)

# --- the paper's models ----------------------------------------------------------

#: Table 1: name -> (architecture, weight decay λ per weight matrix).
TABLE1 = {
    "FC10(1e-4)": ("FC10", (1e-4,)),
    "FC10(1e-2)": ("FC10", (1e-2,)),
    "FC10(1)": ("FC10", (1.0,)),
    "FC100-100-10": ("FC100-100-10", (1e-5, 1e-5, 1e-6)),
    "FC200-200-10": ("FC200-200-10", (1e-5, 1e-5, 1e-6)),
    "AE400-10": ("AE400-10", (1e-6, 1e-6)),
}

#: Table 3: name -> (architecture, λ per weight matrix, training half).
TABLE3 = {
    "FC100-100-10 (P1)": ("FC100-100-10", (1e-5, 1e-5, 1e-5), "P1"),
    "FC123-456-10 (P1)": ("FC123-456-10", (1e-5, 1e-5, 1e-5), "P1"),
    "FC100-100-10' (P2)": ("FC100-100-10", (1e-5, 1e-5, 1e-5), "P2"),
}


def decay_penalty(model: nn.Module, lambdas) -> torch.Tensor:
    """Σ_k (λ_k / 2)·‖W_k‖²_F over the weight matrices of ``model.layers()`` (biases are free).

    With this convention "weight decay λ" shrinks each W_k by λ·lr·W_k per gradient step.
    """
    layers = model.layers()
    if len(lambdas) != len(layers):
        raise ValueError(f"lambdas must have one entry per layer ({len(layers)}), got {len(lambdas)}")
    return sum(lam / 2 * layer.linear.weight.pow(2).sum() for lam, layer in zip(lambdas, layers))


def halves(x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> dict:
    """The paper's two disjoint halves of a training set, {"P1": (x, y), "P2": (x, y)}, split
    by a fixed random permutation (the embedded set is sorted by label)."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    p1, p2 = order[: len(x) // 2].sort().values, order[len(x) // 2:].sort().values
    return {"P1": (x[p1], y[p1]), "P2": (x[p2], y[p2])}


def attack_images(x: torch.Tensor, y: torch.Tensor, n: int, seed: int = 0):
    """``n`` images drawn at random (fixed by ``seed``) from a test set: (x (n, …), y (n,))."""
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return x[idx], y[idx]


def _fit_autoencoder(model: AutoencoderClassifier, x: torch.Tensor, *, epochs: int, lr: float,
                     batch_size: int, seed: int, progress: bool) -> list:
    """Train encoder and decoder to reconstruct ``x`` (binary cross-entropy per pixel), no labels.

    Returns the mean reconstruction loss of each epoch.
    """
    def step(model, batch):
        xb = batch[0].flatten(1)
        return F.binary_cross_entropy(model.reconstruct(xb), xb)

    opt = torch.optim.Adam([*model.encoder.parameters(), *model.decoder.parameters()], lr=lr)
    history = fit(model, Shuffled(x, batch_size=batch_size, seed=seed), step, epochs=epochs, optimizer=opt,
                  progress=progress, desc="autoencoder")
    return history["loss"]


def train_model(name: str, arch: str, lambdas, x: torch.Tensor, y: torch.Tensor, *, data_tag: str,
                epochs: int, lr: float = 1e-2, seed: int = 0, device="cpu", progress: bool = True):
    """Train (or load from the cache) one of the paper's models on images ``x`` in [0, 1].

    ``arch`` is a name for :func:`advcourse.models.fc.build` ("FC10", "FC100-100-10",
    "AE400-10", …); ``lambdas`` the weight decay of each weight matrix. The autoencoder of
    AE400-10 first learns to reconstruct ``x`` for ``epochs`` epochs, then the softmax layer is
    trained on its frozen code. ``data_tag`` names the training data in the cache key.
    Returns ``(model, meta)``.
    """
    config = {"arch": arch, "lambdas": list(lambdas), "data": data_tag, "n": len(x), "epochs": epochs,
              "lr": lr, "seed": seed, "batch_size": 128, "optimizer": "adam"}

    def make(cfg):
        torch.manual_seed(cfg["seed"])
        return build(cfg["arch"])

    def fit_model(model, cfg):
        metrics = {}
        if isinstance(model, AutoencoderClassifier):  # unsupervised pre-training of the code
            metrics["reconstruction"] = _fit_autoencoder(model, x, epochs=max(1, cfg["epochs"] // 2), lr=3e-3,
                                                         batch_size=cfg["batch_size"], seed=cfg["seed"],
                                                         progress=progress)
        loss_fn = lambda logits, yb: F.cross_entropy(logits, yb) + decay_penalty(model, cfg["lambdas"])  # noqa: E731
        history = train(model, x, y, epochs=cfg["epochs"], lr=cfg["lr"], batch_size=cfg["batch_size"],
                        loss_fn=loss_fn, seed=cfg["seed"], progress=progress, desc=f"{name} ({data_tag})")
        return {**metrics, **{k: history[k] for k in ("loss", "train_acc", "seconds")}}

    return load_or_train(f"ch03-{arch}", config, make, fit_model, device=device)


def train_table1(data, *, epochs: dict, seed: int = 0, device="cpu", progress: bool = True) -> dict:
    """The six models of Table 1 trained on ``data``'s training set: {name: model}.

    ``epochs`` maps "FC10", "FC" (the deeper networks) and "AE" to epoch counts.
    """
    models = {}
    for name, (arch, lambdas) in TABLE1.items():
        kind = "FC10" if arch == "FC10" else "AE" if arch.startswith("AE") else "FC"
        models[name], _ = train_model(name, arch, lambdas, data.x_train, data.y_train, data_tag=data.source,
                                      epochs=epochs[kind], seed=seed, device=device, progress=progress)
    return models


def train_table3(data, *, epochs: int, seed: int = 0, device="cpu", progress: bool = True) -> dict:
    """The three models of Table 3, on the disjoint halves P1 and P2 of ``data``'s training set.

    The two FC100-100-10 models differ in their training half and in their initial weights.
    """
    parts, models = halves(data.x_train, data.y_train, seed), {}
    for k, (name, (arch, lambdas, half)) in enumerate(TABLE3.items()):
        models[name], _ = train_model(name, arch, lambdas, *parts[half], data_tag=f"{data.source}-{half}",
                                      epochs=epochs, seed=seed + k, device=device, progress=progress)
    return models


def error_rate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` that ``model`` misclassifies, in [0, 1]."""
    pred, _ = predict(model, x)
    return (pred.cpu() != y.cpu()).float().mean().item()


# --- §3: units against random directions ------------------------------------------

def hidden_activations(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """φ(x): the model's last hidden layer for every image, (N, width), on the CPU."""
    device = device_of(model)
    with eval_mode(model), torch.no_grad():
        return torch.cat([model.hidden(xb.to(device)).cpu() for xb in x.split(batch_size)])


def top_activating(phi: torch.Tensor, v: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (k,) of the rows of ``phi`` (N, d) with the largest ⟨φ(x), v⟩, v of shape (d,)."""
    return (phi @ v).topk(k).indices


def label_purity(labels: torch.Tensor) -> float:
    """Share of the most common label among ``labels`` (k,): 1 when all agree, ≥ 1/k."""
    return torch.bincount(labels).max().item() / len(labels)


@dataclass
class UnitsVsDirections:
    """The top images of natural-basis units e_i and of random directions v (§3, eqs. 1–2)."""

    unit_top: torch.Tensor      # (units, k) indices into the image set, one row per unit
    random_top: torch.Tensor    # (directions, k) indices, one row per random direction
    unit_purity: torch.Tensor   # (units,) label purity of each row
    random_purity: torch.Tensor  # (directions,)
    chance_purity: float        # mean purity of k images drawn at random


def units_vs_directions(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, k: int = 8,
                        directions: int | None = None, generator: torch.Generator | None = None):
    """For every unit of φ (the last hidden layer) and as many random directions v ~ N(0, I),
    find the ``k`` images of ``x`` that maximise ⟨φ(x), e_i⟩ and ⟨φ(x), v⟩ and the label purity
    of each set. ``chance_purity`` is the same purity for random sets of ``k`` images."""
    phi = hidden_activations(model, x)
    d = phi.shape[1]
    directions = directions or d
    units = torch.stack([top_activating(phi, torch.eye(d)[i], k) for i in range(d)])
    vs = torch.randn(directions, d, generator=generator)
    rand = torch.stack([top_activating(phi, v, k) for v in vs])
    purity = lambda idx: torch.tensor([label_purity(y[row]) for row in idx])  # noqa: E731
    chance = purity(torch.stack([torch.randperm(len(x), generator=generator)[:k] for _ in range(200)]))
    return UnitsVsDirections(units, rand, purity(units), purity(rand), chance.mean().item())


def show_top_images(x: torch.Tensor, rows: dict, size: float = 0.9):
    """One row of images per entry of ``rows`` ({row label: indices into x}); returns the figure."""
    import matplotlib.pyplot as plt

    k = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), k, figsize=(size * k + 1.2, size * len(rows)), squeeze=False)
    for r, (label, idx) in enumerate(rows.items()):
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([]), ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if c < len(idx):
                ax.imshow(x[idx[c]].squeeze().cpu(), cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    return fig


# --- §4.1: minimal adversarial examples by box-constrained L-BFGS --------------------

def _one_blas_thread():
    """Limit BLAS to one thread while scipy's L-BFGS-B runs (if threadpoolctl is installed).

    L-BFGS-B's inner linear algebra works on small matrices; several BLAS threads on a
    shared CPU make it many times slower, never faster.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


@dataclass
class AdversarialSet:
    """Minimal adversarial examples for one model on a fixed set of images.

    ``x_adv`` equals ``x`` where the model was already wrong. ``distortion`` is per example;
    ``mean_distortion`` and ``success`` are over the images the model got right.
    """

    x: torch.Tensor          # (N, 1, 28, 28) originals in [0, 1]
    y: torch.Tensor          # (N,) true labels
    x_adv: torch.Tensor      # (N, 1, 28, 28) adversarial examples in [0, 1]
    correct: torch.Tensor    # (N,) bool: the model classified x correctly
    fooled: torch.Tensor     # (N,) bool: the model misclassifies x_adv
    distortion: torch.Tensor  # (N,) sqrt(Σ r² / n)

    @property
    def mean_distortion(self) -> float:
        return self.distortion[self.correct].mean().item()

    @property
    def success(self) -> float:
        """Fraction of the correctly classified images whose adversarial version is misclassified."""
        return self.fooled[self.correct].float().mean().item()


def none_fooled(adv: AdversarialSet, name: str) -> str | None:
    """Why the images that ``name`` classifies correctly *and* its adversarial examples fool (the selection
    ``adv.correct & adv.fooled`` of the stretching and the rays) are none, as a sentence without its
    full stop; None when there is at least one such image."""
    if bool((adv.correct & adv.fooled).any()):
        return None
    n, n_correct = len(adv.y), int(adv.correct.sum())
    why = (f"{name} classifies none of them correctly" if n_correct == 0 else
           f"L-BFGS fooled {name} on none of the {n_correct} it classifies correctly")
    return f"None of the {n} attacked images is both classified correctly and fooled ({why})"


def minimal_adversarial(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, search_steps: int = 10,
                        max_iter: int = 100, c: float = 1.0, chunk: int = 50) -> AdversarialSet:
    """Szegedy et al.'s minimal adversarial example of every image, towards its runner-up class.

    Runs :func:`advcourse.attacks.lbfgs_untargeted` (box-constrained L-BFGS with a line search
    over c) on chunks of ``chunk`` images, each chunk solved as one joint problem.
    """
    device = device_of(model)
    out = []
    with _one_blas_thread():
        for xb, yb in zip(x.split(chunk), y.split(chunk)):
            out.append(lbfgs_untargeted(model, xb.to(device), yb.to(device), c=c,
                                        search_steps=search_steps, max_iter=max_iter).cpu())
    x_adv = torch.cat(out)
    correct = predict(model, x)[0].cpu() == y
    fooled = predict(model, x_adv)[0].cpu() != y
    return AdversarialSet(x, y, x_adv, correct, fooled, distortion(x, x_adv, "rms"))


def show_adversarial(adv: AdversarialSet, model: nn.Module, idx, magnify: float = 10.0):
    """Originals, their adversarial examples and the distortion ×``magnify`` (grey = 0),
    each titled with the model's prediction; returns the figure."""
    import matplotlib.pyplot as plt

    idx = torch.as_tensor(idx).flatten()
    p_clean, _ = predict(model, adv.x[idx])
    p_adv, _ = predict(model, adv.x_adv[idx])
    r = adv.x_adv[idx] - adv.x[idx]
    rows = [("original", adv.x[idx], p_clean), ("adversarial", adv.x_adv[idx], p_adv),
            (f"distortion ×{magnify:g}", (0.5 + magnify * r).clamp(0, 1), None)]
    fig, axes = plt.subplots(3, len(idx), figsize=(1.05 * len(idx) + 1.2, 3.6), squeeze=False)
    for row, (label, imgs, pred) in enumerate(rows):
        for col, ax in enumerate(axes[row]):
            ax.imshow(imgs[col].squeeze().cpu(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if pred is not None:
                ax.set_title(f"→ {int(pred[col])}", fontsize=8)
            elif row == 2:
                ax.set_title(f"{adv.distortion[idx[col]]:.3f}", fontsize=8)
        axes[row, 0].set_ylabel(label, fontsize=9)
    fig.tight_layout()
    return fig


# --- §4.2: cross-model and cross-training-set generalisation -------------------------

def gaussian_noise(x: torch.Tensor, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x + N(0, std²) per pixel, clipped to [0, 1] (the paper's control rows)."""
    if std < 0:
        raise ValueError(f"std must be non-negative, got {std}")
    return (x + std * torch.randn(x.shape, generator=generator)).clamp(0, 1)


def gaussian_at_distortion(x: torch.Tensor, target, generator: torch.Generator | None = None,
                           rounds: int = 30) -> torch.Tensor:
    """Gaussian noise scaled, image by image, so that after clipping to [0, 1] its distortion
    sqrt(Σ r_i² / n) equals ``target``: noise and adversarial examples compared at *equal* size.

    ``target`` is one distortion (a float) or one per image ((N,) tensor, e.g. the distortions
    of a set of adversarial examples). Clipping removes much of the noise on MNIST's black
    background (a pixel at 0 keeps only the positive half), so x + N(0, σ²) has a distortion well
    below σ; the scale is found by bisection (``rounds`` halvings), the clipped distortion
    growing with it. Targets must lie in [0, 0.5) so that every image can reach them.
    """
    target = torch.as_tensor(target, dtype=x.dtype).expand(len(x))
    if target.min() < 0 or target.max() >= 0.5:
        raise ValueError(f"target must be in [0, 0.5), got values in [{target.min():g}, {target.max():g}]")
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    shape = (-1,) + (1,) * (x.ndim - 1)
    lo, hi = torch.zeros(len(x), dtype=x.dtype), torch.full((len(x),), 50.0, dtype=x.dtype)
    for _ in range(rounds):
        mid = (lo + hi) / 2
        too_big = distortion(x, (x + mid.view(shape) * noise).clamp(0, 1), "rms") > target
        hi, lo = torch.where(too_big, mid, hi), torch.where(too_big, lo, mid)
    return (x + lo.view(shape) * noise).clamp(0, 1)


def random_like(r: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A Gaussian random direction for each example of ``r`` (N, …), scaled to the same L2 norm."""
    v = torch.randn(r.shape, generator=generator, dtype=r.dtype)
    scale = r.flatten(1).norm(dim=1) / v.flatten(1).norm(dim=1).clamp(min=1e-12)
    return v * scale.view(-1, *([1] * (r.ndim - 1)))


def amplify(x: torch.Tensor, x_adv: torch.Tensor, std: float) -> torch.Tensor:
    """Rescale each perturbation r = x_adv − x to distortion ``std`` (before clipping to [0, 1]).

    Table 4's "magnified" rows; examples with r = 0 stay unchanged.
    """
    r = x_adv - x
    d = distortion(x, x_adv, "rms").clamp(min=1e-12).view(-1, *([1] * (x.ndim - 1)))
    return (x + r * (std / d)).clamp(0, 1)


def error_table(inputs: dict, models: dict, y: torch.Tensor) -> dict:
    """Error rate of every model on every set of distorted images.

    ``inputs`` maps row names to images (N, 1, 28, 28); returns {row: {model name: error}}.
    """
    return {row: {name: error_rate(m, xs, y) for name, m in models.items()} for row, xs in inputs.items()}


# --- §4.3: instability — Lipschitz bounds from operator norms -------------------------

def operator_norm(w: torch.Tensor) -> float:
    """‖W‖₂, the largest singular value of a weight matrix (out, in)."""
    return torch.linalg.matrix_norm(w.detach().double().cpu(), ord=2).item()


def lipschitz_bounds(model: nn.Module) -> list[dict]:
    """One row per layer φ_k(h) = act(W_k h + b_k): its shape, ‖W_k‖, the activation's Lipschitz
    constant (¼ for the sigmoid) and the layer's upper bound L_k = ‖W_k‖·Lip(act)."""
    rows = []
    for layer in model.layers():
        w = layer.linear.weight
        norm, lip = operator_norm(w), ACTIVATIONS[layer.activation][1]
        rows.append({"layer": layer.name, "size": f"{w.shape[1]}×{w.shape[0]}", "norm": norm,
                     "activation": layer.activation, "act_lipschitz": lip, "bound": norm * lip})
    return rows


def network_bound(model: nn.Module) -> float:
    """∏_k L_k: no input change r can move the logits by more than this times ‖r‖."""
    return math.prod(row["bound"] for row in lipschitz_bounds(model))


def layer_ratios(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """Observed stretching ‖φ_k(x') − φ_k(x)‖ / ‖φ_{k−1}(x') − φ_{k−1}(x)‖ of every layer,
    shape (N, layers); the product over a row is ‖f(x') − f(x)‖ / ‖x' − x‖ for the logits f."""
    device = device_of(model)
    with eval_mode(model), torch.no_grad():
        a, b = model.activations(x.to(device)), model.activations(x_adv.to(device))
    diffs = [(x_adv - x).flatten(1).norm(dim=1)] + [(v - u).norm(dim=1).cpu() for u, v in zip(a, b)]
    return torch.stack([diffs[k + 1] / diffs[k] for k in range(len(a))], dim=1)


def jacobian_norms(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """‖∂f/∂x‖₂ at every image (N,): the local Lipschitz constant of the logits f."""
    from torch.func import jacrev, vmap

    device = device_of(model)
    with eval_mode(model):
        jac = vmap(jacrev(lambda xi: model(xi.unsqueeze(0)).squeeze(0)))(x.to(device))
    return torch.linalg.matrix_norm(jac.detach().flatten(2).double(), ord=2).float().cpu()


# --- "dense like the rationals" or wide regions: walking along the adversarial direction ----

def ray_predictions(model: nn.Module, x: torch.Tensor, r: torch.Tensor, ts) -> torch.Tensor:
    """Predicted labels (N, T) at clip(x + t·r, 0, 1) for each multiple t in ``ts``."""
    ts = torch.as_tensor(ts, dtype=x.dtype)
    pts = (x.unsqueeze(1) + ts.view(1, -1, *([1] * (x.ndim - 1))) * r.unsqueeze(1)).clamp(0, 1)
    pred, _ = predict(model, pts.flatten(0, 1))
    return pred.cpu().view(len(x), len(ts))


def wrong_interval(pred: torch.Tensor, y: torch.Tensor, ts, at: float = 1.0) -> torch.Tensor:
    """Length (N,) of the run of misclassified points along each ray that contains t = ``at``,
    in the units of ``ts`` (0 where the point at ``at`` is classified correctly). A run that
    reaches the end of ``ts`` is cut there: the returned length is then a lower bound."""
    ts = torch.as_tensor(ts, dtype=torch.float64)
    wrong = pred != y.view(-1, 1)
    j0 = int((ts - at).abs().argmin())
    out = torch.zeros(len(y), dtype=torch.float64)
    for i in range(len(y)):
        if not wrong[i, j0]:
            continue
        lo = hi = j0
        while lo > 0 and wrong[i, lo - 1]:
            lo -= 1
        while hi < len(ts) - 1 and wrong[i, hi + 1]:
            hi += 1
        out[i] = ts[hi] - ts[lo]
    return out


NOTHING_TO_SHOW = "no image to show: none was both classified correctly and fooled"


def _nothing_to_show(ax, title: str, why: str):
    """An empty panel: ``why`` in its middle and printed below the cell, instead of an empty plot."""
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=9, transform=ax.transAxes)
    print(f"{title}: {why}.")
    return ax


def show_rays(pred: torch.Tensor, y: torch.Tensor, ts, title: str, ax=None, *, empty: str = NOTHING_TO_SHOW):
    """A band per image (rows) along t (columns): white where the prediction is right, dark
    where it is wrong; the dashed line marks t = 1, the L-BFGS example. With no image, the panel
    says ``empty`` instead (and prints it)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    if len(y) == 0:
        return _nothing_to_show(ax, title, empty)
    ts = torch.as_tensor(ts)
    wrong = (pred != y.view(-1, 1)).float()
    ax.imshow(wrong.numpy(), aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest",
              extent=(ts[0].item(), ts[-1].item(), len(y) - 0.5, -0.5))
    ax.axvline(1.0, color="C3", ls="--", lw=1)
    ax.set_xlabel("t  (point x + t·r;  t = 1: the L-BFGS example)")
    ax.set_ylabel("test image")
    ax.set_title(title, fontsize=10)
    return ax


# --- figures of the transfer tables and of the stretching ---------------------------------

def show_error_table(table: dict, title: str, ax=None):
    """A heat map of ``error_table``'s output: rows = distorted inputs, columns = models,
    each cell the error rate in %."""
    import matplotlib.pyplot as plt

    rows, cols = list(table), list(next(iter(table.values())))
    vals = torch.tensor([[table[r][c] for c in cols] for r in rows]) * 100
    if ax is None:
        _, ax = plt.subplots(figsize=(1.1 * len(cols) + 3, 0.42 * len(rows) + 1.6))
    ax.imshow(vals.numpy(), cmap="Reds", vmin=0, vmax=100, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            v = vals[i, j].item()
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=8, color="white" if v > 60 else "black")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel("model that classifies them")
    ax.set_title(title, fontsize=10)
    return ax


def show_stretch(ratios: dict, bound: float, title: str, ax=None, *, empty: str = NOTHING_TO_SHOW):
    """Histograms (log scale) of per-image stretching ratios ({label: (N,) tensor}) with the
    global upper bound ∏ L_k as a vertical line. With no positive ratio to show (no image
    selected), the panel says ``empty`` instead (and prints it)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.2, 3.2))
    positive = [v[v > 0] for v in ratios.values() if (v > 0).any()]
    if not positive:
        return _nothing_to_show(ax, title, empty)
    lo = min(v.min().item() for v in positive)
    bins = torch.logspace(math.log10(lo) - 0.1, math.log10(bound) + 0.2, 50).numpy()
    for label, v in ratios.items():
        ax.hist(v.numpy(), bins=bins, alpha=0.6, label=label)
    ax.axvline(bound, color="k", ls="--", lw=1.2, label=f"upper bound ∏ L_k = {bound:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("‖f(x′) − f(x)‖ / ‖x′ − x‖  (f = logits)")
    ax.set_ylabel("test images")
    ax.set_title(title, fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    return ax
