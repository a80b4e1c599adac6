"""Chapter 6 — gradient masking: where it comes from, how to see through it, and an audit.

* the audit itself, which automates the published checklists, is
  :func:`advcourse.attacks.audit`; the masked models and the BPDA / EOT wrappers are in
  :mod:`advcourse.defenses.masked`;
* :func:`train_model` trains (or loads from the cache) the chapter's models: a standard
  CNN, a Leaky-ReLU substitute, a defensively distilled CNN and an adversarially
  trained one;
* the remaining functions are the chapter's small experiments: saturating
  activations, a shattered-gradient toy, a second-order (Hessian-vector) probe,
  attention masks and gradient masks in continual learning.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import pgd
from ..cache import load_or_train
from ..defenses import soft_labels, swap_activation, temperature_loss, train_distilled
from ..evaluate import eval_mode, logits
from ..models import MnistCNN
from ..train import Shuffled, fit, train


@dataclass(frozen=True)
class Settings:
    """Chapter 6's settings, shared by the chapter and its claim tests.

    ``eps``: the L∞ budget audited throughout. Epochs of the standard, substitute, teacher and
    distilled CNNs (``epochs``; the student at ``distill_lr``, temperature ``temperature``) and
    of adversarial training (``at_epochs``); ``n_audit`` test digits per audit with PGD-``steps``;
    ``continual_epochs`` per task in the continual-learning demo.
    """

    eps: float = 0.2
    epochs: int = 3
    at_epochs: int = 3
    distill_lr: float = 5e-3
    temperature: float = 100.0
    n_audit: int = 100
    steps: int = 10
    continual_epochs: int = 3

    def smoke(self) -> Settings:
        """The smoke profile's settings (CI): these settings with the work capped to seconds on a CPU."""
        return replace(self, epochs=1, at_epochs=1, n_audit=50, steps=3, continual_epochs=1)


#: The CPU profile (the embedded MNIST).
FAST = Settings()
#: The GPU profile (all of MNIST).
FULL = Settings(epochs=10, at_epochs=15, n_audit=1000, steps=40, continual_epochs=5)

# ---------------------------------------------------------------------------------------------
# The chapter's models, trained once and cached
# ---------------------------------------------------------------------------------------------

KINDS = ("standard", "leaky", "teacher", "distilled", "adversarial")


def _build(cfg: dict) -> nn.Module:
    torch.manual_seed(cfg["seed"])
    model = MnistCNN(tuple(cfg["channels"]), cfg["hidden"])
    if cfg["kind"] == "leaky":
        model = swap_activation(model, lambda: nn.LeakyReLU(cfg["slope"]))
    return model


def train_model(kind: str, x: torch.Tensor, y: torch.Tensor, *, data_tag: str, epochs: int, seed: int = 0,
                device="cpu", eps: float = 0.0, temperature: float = 100.0, channels=(16, 32), hidden: int = 128,
                slope: float = 0.1, lr: float = 1e-3, progress: bool = True):
    """Train (or load from the cache) one of the chapter's CNNs on images ``x`` in [0, 1], labels ``y``.

    ``kind``:
      * ``"standard"``: :class:`MnistCNN` with ReLU, cross-entropy;
      * ``"leaky"``: the same with Leaky ReLU of slope ``slope`` — the transfer substitute;
      * ``"teacher"``: trained on ``softmax(logits / temperature)``;
      * ``"distilled"``: trained at ``temperature`` on the teacher's soft labels at that
        temperature, deployed at temperature 1 (defensive distillation);
      * ``"adversarial"``: adversarial training on worst-case examples only (``clean_weight=0``,
        as Madry et al.), with FGSM from a random start at ``eps`` (step 1.25·ε; Wong et al. 2020).
    Returns ``(model, meta)``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    config = {"kind": kind, "data": data_tag, "n": len(x), "epochs": epochs, "seed": seed, "lr": lr,
              "channels": list(channels), "hidden": hidden,
              "eps": eps if kind == "adversarial" else None,
              "temperature": temperature if kind in ("teacher", "distilled") else None,
              "slope": slope if kind == "leaky" else None}

    def fit_model(model, cfg):
        if kind == "distilled":
            teacher, _ = train_model("teacher", x, y, data_tag=data_tag, epochs=epochs, seed=seed, device=device,
                                     temperature=temperature, channels=channels, hidden=hidden, lr=lr,
                                     progress=progress)
            soft = soft_labels(teacher, x, temperature, batch_size=512)
            return train_distilled(model, x, soft, temperature, epochs=epochs, lr=lr, seed=seed, progress=progress)
        kw = {}
        if kind == "teacher":
            kw["loss_fn"] = temperature_loss(temperature)
        if kind == "adversarial":
            kw["adversary"] = lambda m, xb, yb: pgd(m, xb, yb, eps, alpha=1.25 * eps, steps=1, random_start=True)
            kw["clean_weight"] = 0.0
        hist = train(model, x, y, epochs=epochs, lr=lr, seed=seed, progress=progress, desc=f"{kind} CNN", **kw)
        return {k: hist[k] for k in ("loss", "train_acc", "seconds")}

    return load_or_train(f"ch06-{kind}-{data_tag}", config, _build, fit_model, device=device)


def adaptive_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *,
                      attack_model: nn.Module | None = None, loss: str = "ce", steps: int = 10,
                      generator: torch.Generator | None = None) -> float:
    """Accuracy of ``model`` on PGD examples crafted on ``attack_model`` (default: ``model``).

    ``attack_model`` is the differentiable stand-in of an adaptive attack: a BPDA or EOT
    wrapper of the same model. ``loss`` is "ce" or "margin" (C&W's logit margin). An
    example counts as robust if it is classified correctly clean and after the attack.
    """
    src = attack_model if attack_model is not None else model
    x_adv = pgd(src, x, y, eps, steps=steps, loss=loss, generator=generator) if eps > 0 else x
    correct = (logits(model, x, 500).argmax(1) == y) & (logits(model, x_adv, 500).argmax(1) == y)
    return float(correct.float().mean())


def unmasking_curves(pairs: dict, x: torch.Tensor, y: torch.Tensor, eps_values, steps: int = 10,
                     generator: torch.Generator | None = None) -> dict:
    """For each name → (model, naive attack kwargs, adaptive attack kwargs), the accuracy
    (fractions in [0, 1]) against ε of the naive and of the adaptive PGD attack.
    Returns {name: {"naive": [...], "adaptive": [...]}}."""
    out = {}
    for name, (model, naive, adaptive) in pairs.items():
        out[name] = {kind: [adaptive_accuracy(model, x, y, e, steps=steps, generator=generator, **kw)
                            for e in eps_values] for kind, kw in (("naive", naive), ("adaptive", adaptive))}
    return out


# ---------------------------------------------------------------------------------------------
# Where masked gradients come from: saturating and dead activations
# ---------------------------------------------------------------------------------------------

ACTIVATIONS = {
    "tanh": torch.tanh,
    "clip to [0, 1]": lambda z: z.clamp(0, 1),
    "ReLU6": F.relu6,
    "ReLU": F.relu,
    "Leaky ReLU (0.01)": lambda z: F.leaky_relu(z, 0.01),
    "GELU": F.gelu,
}


def derivative(fn, z: torch.Tensor) -> torch.Tensor:
    """The elementwise derivative fn'(z) by autograd, same shape as ``z``."""
    z = z.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(fn(z).sum(), z)
    return g


def zero_derivative_table(sigma: float = 3.0, n: int = 200_000, generator: torch.Generator | None = None,
                          small: float = 1e-3) -> dict:
    """For each activation of :data:`ACTIVATIONS`, on pre-activations z ~ N(0, σ²) (``n`` draws):
    the fraction where the derivative is exactly 0 and where it is below ``small``.
    Returns {name: (exactly_zero, below_small)} as fractions in [0, 1]."""
    z = sigma * torch.randn(n, generator=generator)
    out = {}
    for name, fn in ACTIVATIONS.items():
        d = derivative(fn, z).abs()
        out[name] = (float((d == 0).float().mean()), float((d < small).float().mean()))
    return out


def plot_activations(zmax: float = 8.0, axes=None):
    """Two panels: each activation of :data:`ACTIVATIONS` and its derivative on [−zmax, zmax]."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.3))
    z = torch.linspace(-zmax, zmax, 801)
    for name, fn in ACTIVATIONS.items():
        axes[0].plot(z, fn(z), label=name)
        axes[1].plot(z, derivative(fn, z), label=name)
    axes[0].set(title="activation f(z)", xlabel="pre-activation z", ylim=(-1.5, 7))
    axes[1].set(title="derivative f′(z): 0 means no gradient", xlabel="pre-activation z")
    axes[1].legend(frameon=False, fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].figure.tight_layout()
    return axes


def relu_activity(model: nn.Module, x: torch.Tensor) -> list:
    """For each ``nn.ReLU`` of ``model``: (mean fraction of its units inactive — output 0 and
    derivative 0 — per input, fraction of units inactive on every input of ``x``)."""
    outs, hooks = [], [m.register_forward_hook(lambda mod, i, o: outs.append(o.detach()))
                        for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        with eval_mode(model), torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    res = []
    for o in outs:
        off = (o <= 0).flatten(1)
        res.append((float(off.float().mean()), float(off.all(0).float().mean())))
    return res


# ---------------------------------------------------------------------------------------------
# Shattered gradients: a smooth bowl plus a high-frequency ripple
# ---------------------------------------------------------------------------------------------

def ripple_loss(x: torch.Tensor, amplitude: float = 0.05, omega: float = 60.0) -> torch.Tensor:
    """The toy loss L(x) = ½‖x‖² + a·Σᵢ sin(ω xᵢ) of points ``x`` (N, d), shape (N,).

    The bowl ½‖x‖² rises towards the rim (the direction an attacker wants, ∇ = x); the
    ripple adds a gradient a·ω·cos(ω xᵢ) of size up to a·ω that swamps it near the centre.
    """
    return 0.5 * (x ** 2).sum(1) + amplitude * torch.sin(omega * x).sum(1)


def ripple_gradient_agreement(amplitude: float = 0.05, omega: float = 60.0, radius: float = 1.0,
                              n: int = 10_000, generator: torch.Generator | None = None) -> float:
    """Fraction of points x uniform in [−radius, radius]² at which ∇L points *away* from the
    bowl's ascent direction x (negative cosine): the gradient "points the wrong way"."""
    x = (2 * torch.rand(n, 2, generator=generator) - 1) * radius
    g = x + amplitude * omega * torch.cos(omega * x)
    return float((F.cosine_similarity(g, x, dim=1) < 0).float().mean())


def ripple_ascent(x0, steps: int = 40, lr: float = 0.02, smooth: float = 0.0, samples: int = 32,
                  amplitude: float = 0.05, omega: float = 60.0, generator: torch.Generator | None = None):
    """Gradient ascent on :func:`ripple_loss` from ``x0`` (d,), clipped to [−1, 1]^d.

    ``smooth`` > 0 averages the gradient over ``samples`` Gaussian perturbations of that
    standard deviation (an expectation over transformation); 0 uses the raw gradient.
    Returns the path (steps + 1, d) and the loss along it (steps + 1,).
    """
    x = torch.as_tensor(x0, dtype=torch.float32).clone()
    path = [x.clone()]
    for _ in range(steps):
        pts = x[None] + smooth * torch.randn(samples if smooth else 1, len(x), generator=generator)
        pts.requires_grad_(True)
        (g,) = torch.autograd.grad(ripple_loss(pts, amplitude, omega).sum(), pts)
        x = (x + lr * g.mean(0)).clamp(-1, 1)
        path.append(x.clone())
    path = torch.stack(path)
    return path, ripple_loss(path, amplitude, omega)


def plot_ripple(paths: dict, amplitude: float = 0.05, omega: float = 60.0, ax=None):
    """Contours of the toy loss on [−1, 1]² with named ascent paths drawn on top."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 4.2))
    t = torch.linspace(-1, 1, 300)
    gx, gy = torch.meshgrid(t, t, indexing="xy")
    loss = ripple_loss(torch.stack([gx.flatten(), gy.flatten()], 1), amplitude, omega).view(300, 300)
    ax.contourf(gx, gy, loss, levels=30, cmap="viridis")
    for (name, path), colour in zip(paths.items(), ("w", "C3", "C1")):
        ax.plot(path[:, 0], path[:, 1], "-o", ms=2, color=colour, label=name)
    ax.set(xlabel="x₁", ylabel="x₂", title="L(x) = ½‖x‖² + a·Σ sin(ω xᵢ)")
    ax.legend(frameon=True, fontsize=8, loc="lower right")
    return ax


# ---------------------------------------------------------------------------------------------
# Curvature: a second-order probe with Hessian-vector products
# ---------------------------------------------------------------------------------------------

def hvp(f, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Hessian-vector product ∇²f(x)·v of a scalar function ``f`` at ``x`` (any shape), by
    double back-propagation: ∇ₓ(∇ₓf(x)·v). Costs about two gradients; never forms the Hessian."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(f(x), x, create_graph=True)
        (hv,) = torch.autograd.grad((g * v).sum(), x)
    return hv.detach()


def top_curvature(f, x: torch.Tensor, iters: int = 30, generator: torch.Generator | None = None):
    """The largest eigenvalue λ of ∇²f(x) and its unit eigenvector, by power iteration on
    :func:`hvp` (shifted so the *most positive* eigenvalue wins). Returns (λ, v)."""
    v = torch.randn(x.shape, generator=generator)
    v = v / v.norm()
    shift = 2 * max(float(hvp(f, x, v).norm()), 1e-12)  # a heuristic bound on |λ|: H + shift·I ≻ 0
    for _ in range(iters):
        w = hvp(f, x, v) + shift * v
        v = w / w.norm()
    lam = float((v * hvp(f, x, v)).sum())
    return lam, v


def curvature_toy(d: int = 784, lam: float = 4.0, mu: float = 1.0, grad_size: float = 1e-4,
                  generator: torch.Generator | None = None):
    """A loss with a near-flat point and one steep upward direction, at x = 0 in d dimensions:

        f(x) = gᵀx + ½·λ·(uᵀx)² − ½·μ·‖x‖²,   ‖g‖₂ = ``grad_size``, u a random unit vector.

    The gradient at 0 is g (tiny); the Hessian λuuᵀ − μI has top eigenvalue λ − μ along u.
    Returns (f, u, g).
    """
    u = torch.randn(d, generator=generator)
    u = u / u.norm()
    g = torch.randn(d, generator=generator)
    g = grad_size * g / g.norm()

    def f(x):
        return g @ x + 0.5 * lam * (u @ x) ** 2 - 0.5 * mu * (x @ x)

    return f, u, g


# ---------------------------------------------------------------------------------------------
# Masking as a design tool
# ---------------------------------------------------------------------------------------------

def attention_mask_demo(length: int = 6, padding: int = 2, embed: int = 8, heads: int = 2, seed: int = 0) -> dict:
    """A causal + padding mask in ``torch.nn.MultiheadAttention`` and what it does to gradients.

    A random sequence (1, length, embed) attends to itself; position t may attend to s ≤ t
    only (causal ``attn_mask``), and the last ``padding`` positions are padding
    (``key_padding_mask``). Returns the head-averaged attention weights (length, length),
    the allowed-pairs mask, and ``influence[t, s] = ‖∂ out_t / ∂ x_s‖`` — exactly 0 where masked.
    """
    torch.manual_seed(seed)
    mha = nn.MultiheadAttention(embed, heads, batch_first=True).eval()
    x = torch.randn(1, length, embed, requires_grad=True)
    causal = torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)  # True = blocked
    pad = torch.zeros(1, length, dtype=torch.bool)
    pad[0, length - padding:] = True
    out, weights = mha(x, x, x, attn_mask=causal, key_padding_mask=pad, need_weights=True)
    influence = torch.zeros(length, length)
    for t in range(length):
        (g,) = torch.autograd.grad(out[0, t].sum(), x, retain_graph=True)
        influence[t] = g[0].norm(dim=1)
    allowed = (~causal & ~pad[0][None, :]) | torch.eye(length, dtype=torch.bool)  # x_t always forms its own query
    return {"weights": weights[0].detach(), "allowed": allowed, "influence": influence}


class _TwoHeadMLP(nn.Module):
    """784 → ``hidden`` ReLU → one linear head per task; ``forward(x, task)`` gives that task's logits."""

    def __init__(self, hidden: int = 100, classes_per_task: int = 5, tasks: int = 2):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(hidden, classes_per_task) for _ in range(tasks))

    def forward(self, x, task: int = 0):
        return self.heads[task](self.body(x))


def _fit_task(model, x, y, task, epochs, seed, mask=None, lr=1e-3, batch_size=128):
    """Train ``model`` on one task; ``mask`` {param: 0/1 tensor} zeroes the gradient of protected weights."""
    opt = torch.optim.Adam([*model.body.parameters(), *model.heads[task].parameters()], lr=lr)
    hooks = [p.register_hook(lambda g, m=m: g * m) for p, m in (mask or {}).items()]
    try:
        fit(model, Shuffled(x, y, batch_size=batch_size, seed=seed),
            lambda model, batch: F.cross_entropy(model(batch[0], task), batch[1]),
            epochs=epochs, optimizer=opt, progress=False)
    finally:
        for h in hooks:
            h.remove()


def _task_accuracy(model, x, y, task):
    with torch.no_grad():
        return float((model(x, task).argmax(1) == y).float().mean())


def continual_demo(data, protect: float = 0.5, epochs: int = 2, hidden: int = 100, seed: int = 0,
                   lr_b: float = 1e-2) -> dict:
    """Gradient masks that protect weights in continual learning (task-incremental, two heads).

    Task A: digits 0–4; task B: digits 5–9 (labels 0–4 within each task). Train on A; then
    train on B either freely (fine-tuning) or with the gradient of the shared weights most
    important to A — the fraction ``protect`` with the largest squared gradient of A's loss
    (a diagonal Fisher estimate, as in EWC) — set to zero by a hook, so they never move.
    Task B is learnt with the larger learning rate ``lr_b``, which makes forgetting visible.
    Returns the task accuracies (fractions in [0, 1]) after A and after B for both variants.
    """
    def task(x, y, lo):
        keep = (y >= lo) & (y < lo + 5)
        return x[keep], y[keep] - lo

    (xa, ya), (xb, yb) = task(data.x_train, data.y_train, 0), task(data.x_train, data.y_train, 5)
    (ta, la), (tb, lb) = task(data.x_test, data.y_test, 0), task(data.x_test, data.y_test, 5)
    torch.manual_seed(seed)
    base = _TwoHeadMLP(hidden)
    _fit_task(base, xa, ya, 0, epochs, seed)
    out = {"after A": {"A": _task_accuracy(base, ta, la, 0)}}
    # importance of each shared weight for task A: mean squared gradient of A's loss
    fisher = {p: torch.zeros_like(p) for p in base.body.parameters()}
    for idx in torch.arange(len(xa)).split(256):
        base.zero_grad()
        F.cross_entropy(base(xa[idx], 0), ya[idx]).backward()
        for p in fisher:
            fisher[p] += p.grad ** 2
    flat = torch.cat([f.flatten() for f in fisher.values()])
    threshold = flat.kthvalue(max(1, int((1 - protect) * len(flat)))).values
    mask = {p: (f <= threshold).float() for p, f in fisher.items()}  # 1 = free, 0 = protected
    for name, m in (("fine-tuning", None), ("gradient mask", mask)):
        model = copy.deepcopy(base)
        if m is not None:
            m = {q: m[p] for p, q in zip(base.body.parameters(), model.body.parameters())}
        _fit_task(model, xb, yb, 1, epochs, seed + 1, mask=m, lr=lr_b)
        out[name] = {"A": _task_accuracy(model, ta, la, 0), "B": _task_accuracy(model, tb, lb, 1)}
    out["protected"] = float(1 - torch.cat([m.flatten() for m in mask.values()]).mean())
    return out


def masked_zoo(standard: nn.Module, distilled: nn.Module, *, scale: float = 100.0, levels: int = 8,
               shift: int = 1, noise: float = 0.2) -> dict:
    """The chapter's masked models, built around the trained ``standard`` CNN, in eval mode:
    the distilled CNN, the standard one with logits × ``scale``, behind a quantiser with
    ``levels`` grey levels, and behind a random shift (± ``shift`` px) and Gaussian noise."""
    from ..defenses import Preprocessed, Quantise, Randomised, ScaledLogits

    return {"distilled (T = 100)": distilled.eval(),
            f"logits × {scale:g}": ScaledLogits(standard, scale).eval(),
            f"quantised ({levels} levels)": Preprocessed(Quantise(levels), standard).eval(),
            "randomised": Preprocessed(Randomised(shift, noise), standard).eval()}


def plot_unmasking(curves: dict, eps_values, labels: dict, axes=None):
    """One panel per masked model: accuracy against ε under the naive and the adaptive attack.
    ``curves`` as returned by :func:`unmasking_curves`; ``labels`` {name: (naive, adaptive)}."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, len(curves), figsize=(3.3 * len(curves), 3.1), sharey=True)
    for ax, (name, c) in zip(axes, curves.items()):
        naive, adaptive = labels[name]
        ax.plot(eps_values, [100 * v for v in c["naive"]], "o-", label=naive)
        ax.plot(eps_values, [100 * v for v in c["adaptive"]], "s-", label=adaptive)
        ax.set(title=name, xlabel="ε", ylim=(-3, 103))
        ax.legend(frameon=False, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    axes[0].figure.tight_layout()
    return axes
