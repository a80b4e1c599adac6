"""Chapter 6 — gradient masking: where it comes from, how to see through it, and an audit.

* :func:`audit` automates the checklists of Carlini et al. 2019 ("On evaluating
  adversarial robustness") and Athalye et al. 2018 ("Obfuscated gradients give a false
  sense of security") and returns an :class:`AuditReport`;
* :func:`train_model` trains (or loads from the cache) the chapter's models: a standard
  CNN, a Leaky-ReLU substitute, a defensively distilled CNN and an adversarially
  trained one;
* the remaining functions are the chapter's small experiments: saturating
  activations, a shattered-gradient toy, a second-order (Hessian-vector) probe,
  attention masks and gradient masks in continual learning.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .attacks import fgsm, pgd, square
from .attacks._validate import eval_mode
from .cache import load_or_train
from .masked_models import swap_activation
from .models.cnn import MnistCNN
from .train import train

# ---------------------------------------------------------------------------------------------
# The audit
# ---------------------------------------------------------------------------------------------


@dataclass
class Check:
    """One item of the checklist: did the model pass, and on what evidence."""

    name: str
    passed: bool
    evidence: str          # the measured numbers, readable
    rule: str              # what passing means
    values: dict = field(default_factory=dict)


@dataclass
class AuditReport:
    """The outcome of :func:`audit`: one :class:`Check` per item, plus the headline numbers.

    ``passed`` is True when no check failed; ``flags`` lists the failed checks' names;
    ``robust_accuracy`` is the per-example worst case over every attack the audit ran.
    In a notebook the report renders as a Markdown table.
    """

    name: str
    eps: float
    n: int
    clean_accuracy: float
    robust_accuracy: float
    checks: list

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def flags(self) -> list:
        return [c.name for c in self.checks if not c.passed]

    def __getitem__(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check named {name!r}; the checks are {[c.name for c in self.checks]}")

    def _repr_markdown_(self) -> str:
        verdict = "no sign of gradient masking" if self.passed else f"{len(self.flags)} check(s) failed"
        head = (f"**Audit of {self.name}** (ε = {self.eps:g}, {self.n} examples): {verdict}; "
                f"clean accuracy {100 * self.clean_accuracy:.1f}%, worst case over all attacks "
                f"{100 * self.robust_accuracy:.1f}%.\n\n")
        rows = ["| check | result | evidence | passes when |", "|---|---|---|---|"]
        for c in self.checks:
            rows.append(f"| {c.name} | {'pass' if c.passed else '**FAIL**'} | {c.evidence} | {c.rule} |")
        return head + "\n".join(rows)

    def __repr__(self) -> str:
        lines = [f"Audit of {self.name}: eps={self.eps:g}, n={self.n}, clean={self.clean_accuracy:.3f}, "
                 f"worst case={self.robust_accuracy:.3f}, passed={self.passed}"]
        lines += [f"  [{'pass' if c.passed else 'FAIL'}] {c.name}: {c.evidence}" for c in self.checks]
        return "\n".join(lines)


def _logits(model, x, batch_size=500):
    with torch.no_grad():
        return torch.cat([model(xb) for xb in x.split(batch_size)])


def _correct(model, x, y):
    """Bool (N,): prediction == label, in eval mode."""
    with eval_mode(model):
        return _logits(model, x).argmax(1) == y


def _attack_correct(model, x, y, attack, eps):
    """Bool (N,) correct under ``attack(model, x, y, eps=eps)``, and the adversarial examples."""
    x_adv = attack(model, x, y, eps=eps)
    return _correct(model, x_adv, y), x_adv


def zero_gradient_fraction(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Fraction of examples whose cross-entropy input gradient is exactly zero, and the
    median L1 norm of the gradient. ``x`` (N, ...) in [0, 1], ``y`` (N,) labels."""
    with eval_mode(model):
        xr = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(model(xr), y, reduction="sum")
            (g,) = torch.autograd.grad(loss, xr)
    norms = g.flatten(1).abs().sum(1)
    return float((norms == 0).float().mean()), float(norms.median())


def audit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, name: str = "model",
          substitute: nn.Module | None = None, attack=None, steps: int = 10, restarts: int = 2,
          more_steps: int = 2, square_queries: int = 200, eps_fractions=(0.25, 0.5, 1.0, 2.0),
          tol: float = 0.03, zero_grad_tol: float = 0.05, n: int | None = None,
          generator: torch.Generator | None = None) -> AuditReport:
    """Audit an L∞ robustness evaluation of ``model`` for the symptoms of gradient masking.

    The checklist of Carlini et al. 2019 (§5) and Athalye et al. 2018 (§3.1), automated:

    1. the model returns logits, not probabilities;
    2. it is evaluated in eval mode (dropout, batch norm);
    3. the same input twice gives the same logits (no hidden randomness);
    4. ε = 0 gives the clean accuracy;
    5. the adversarial examples stay in [0, 1] and in the ε-ball;
    6. few examples have an exactly zero input gradient;
    7. the iterative attack beats the single-step one (FGSM);
    8. accuracy falls monotonically with ε (within ``tol``);
    9. an unbounded attack (ε = 1, no random start) brings accuracy to chance or below;
    10. the white-box attack beats a transfer attack from ``substitute`` (if given);
    11. it beats the gradient-free Square attack;
    12. ``more_steps`` × the steps with ``restarts`` restarts lowers accuracy by at most ``tol``.

    Args:
        model: classifier returning logits (N, K); any mode (it is restored).
        x, y: images (N, ...) in [0, 1] and labels (N,); the first ``n`` are used.
        eps: the L∞ budget.
        attack: the white-box attack under audit, ``attack(model, x, y, eps=...) -> x_adv``;
            default PGD (cross-entropy, ``steps`` steps, random start).
        tol: slack for comparisons of accuracies (fractions in [0, 1]).
        zero_grad_tol: largest acceptable fraction of zero input gradients.
    Returns:
        :class:`AuditReport`; its ``flags`` name the failed checks.
    """
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    if n is not None:
        x, y = x[:n], y[:n]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x, y = x.to(device), y.to(device)
    if attack is None:
        attack = functools.partial(pgd, steps=steps, early_stop=True, generator=generator)
    checks, correct = [], {}
    pc = lambda v: f"{100 * v:.1f}%"  # noqa: E731

    # 1. logits, not probabilities
    was_training = [m.training for m in model.modules()]
    with eval_mode(model):
        z1 = _logits(model, x)
        z2 = _logits(model, x)
    probs = bool((z1 >= 0).all() and torch.allclose(z1.sum(1), torch.ones(len(z1), device=device), atol=1e-4))
    checks.append(Check("outputs are logits", not probs,
                        f"rows {'are' if probs else 'are not'} non-negative and summing to 1",
                        "the model's outputs are not probabilities", {"probabilities": probs}))
    k = z1.shape[1]

    # 2. eval mode
    changed = False
    if any(was_training) and torch.equal(z1, z2):  # a random model's outputs differ anyway
        with torch.no_grad():
            zt = _logits(model, x)  # in the mode the model was handed over in
        changed = not torch.allclose(zt, z1, atol=1e-5)
    checks.append(Check("evaluated in eval mode", not (any(was_training) and changed),
                        f"handed over in {'training' if any(was_training) else 'eval'} mode"
                        + ("; train-mode outputs differ" if changed else ""),
                        "the model is not in training mode, or its outputs do not depend on the mode",
                        {"training": any(was_training), "outputs_differ": changed}))

    # 3. determinism
    diff = float((z1 - z2).abs().max()) if len(z1) else 0.0
    checks.append(Check("same input, same logits", diff <= 1e-6, f"max |Δ logit| over two calls = {diff:.3g}",
                        "two forward passes on the same input agree", {"max_diff": diff}))

    # 4. ε = 0
    correct["clean"] = _correct(model, x, y)
    clean = float(correct["clean"].float().mean())
    at0, _ = _attack_correct(model, x, y, attack, 0.0)
    acc0 = float(at0.float().mean())
    checks.append(Check("ε = 0 gives the clean accuracy", acc0 == clean, f"clean {pc(clean)}, attack at ε = 0 {pc(acc0)}",
                        "the two are equal", {"clean": clean, "eps0": acc0}))

    # 5. bounds
    correct["white-box"], x_adv = _attack_correct(model, x, y, attack, eps)
    dist = float((x_adv - x).abs().max()) if len(x) else 0.0
    in_box = bool(x_adv.min() >= 0 and x_adv.max() <= 1)
    checks.append(Check("examples within bounds", in_box and dist <= eps + 1e-6,
                        f"max ‖x_adv − x‖∞ = {dist:.4g} (ε = {eps:g}); {'inside' if in_box else 'outside'} [0, 1]",
                        "‖x_adv − x‖∞ ≤ ε and x_adv ∈ [0, 1]", {"linf": dist, "in_box": in_box}))
    white = float(correct["white-box"].float().mean())

    # 6. zero gradients
    zero, median = zero_gradient_fraction(model, x, y)
    checks.append(Check("few zero gradients", zero <= zero_grad_tol,
                        f"{pc(zero)} of input gradients are exactly 0 (median ‖g‖₁ = {median:.2g})",
                        f"at most {pc(zero_grad_tol)} are 0", {"zero_fraction": zero, "median_l1": median}))

    # 7. iterative beats single-step
    correct["FGSM"], _ = _attack_correct(model, x, y, lambda m, a, b, eps: fgsm(m, a, b, eps), eps)
    one = float(correct["FGSM"].float().mean())
    checks.append(Check("iterative beats single-step", white < one or white <= 0.02,
                        f"FGSM {pc(one)}, iterative {pc(white)}",
                        "iterative accuracy < FGSM accuracy (or ≤ 2%)", {"fgsm": one, "iterative": white}))

    # 8. monotone in ε
    grid = sorted({min(1.0, f * eps) for f in eps_fractions} | {eps})
    curve = [clean] + [white if e == eps else float(_attack_correct(model, x, y, attack, e)[0].float().mean())
                       for e in grid]
    rises = max((b - a for a, b in zip(curve, curve[1:])), default=0.0)
    checks.append(Check("accuracy falls with ε", rises <= tol,
                        "ε = 0, " + ", ".join(f"{e:.3g}" for e in grid) + ": " + ", ".join(pc(v) for v in curve),
                        f"no rise larger than {pc(tol)}", {"eps": [0.0] + grid, "accuracy": curve}))

    # 9. unbounded attack
    unb = functools.partial(pgd, steps=steps, alpha=2.5 / steps, random_start=False, early_stop=True)
    correct["unbounded"], _ = _attack_correct(model, x, y, unb, 1.0)
    free = float(correct["unbounded"].float().mean())
    checks.append(Check("unbounded attack succeeds", free <= 1.0 / k,
                        f"accuracy at ε = 1: {pc(free)} (chance {pc(1.0 / k)})",
                        "accuracy ≤ chance", {"unbounded": free}))

    # 10. transfer
    if substitute is not None:
        x_t = pgd(substitute, x, y, eps, steps=steps, generator=generator)
        correct["transfer"] = _correct(model, x_t, y)
        tr = float(correct["transfer"].float().mean())
        checks.append(Check("white-box beats transfer", white <= tr + tol,
                            f"transfer {pc(tr)}, white-box {pc(white)}",
                            f"white-box ≤ transfer + {pc(tol)}", {"transfer": tr, "white_box": white}))

    # 11. black-box
    correct["Square"] = _correct(model, square(model, x, y, eps, n_queries=square_queries, generator=generator), y)
    sq = float(correct["Square"].float().mean())
    checks.append(Check("white-box beats black-box", white <= sq + tol,
                        f"Square ({square_queries} queries) {pc(sq)}, white-box {pc(white)}",
                        f"white-box ≤ Square + {pc(tol)}", {"square": sq, "white_box": white}))

    # 12. more steps and restarts
    strong = functools.partial(pgd, steps=more_steps * steps, restarts=restarts, early_stop=True, generator=generator)
    correct["stronger"], _ = _attack_correct(model, x, y, strong, eps)
    st = float(correct["stronger"].float().mean())
    checks.append(Check("more steps change little", white - st <= tol,
                        f"{more_steps * steps} steps × {restarts} restarts {pc(st)}, {steps} steps {pc(white)}",
                        f"drop ≤ {pc(tol)}", {"stronger": st, "white_box": white}))

    worst = torch.stack([correct[key] for key in correct if key != "unbounded"]).all(0)
    return AuditReport(name, float(eps), len(x), clean, float(worst.float().mean()), checks)


def audit_table(reports) -> "MarkdownTable":
    """One row per :class:`AuditReport`: clean, FGSM, white-box, transfer, Square and worst-case
    accuracy, the zero-gradient fraction and the failed checks."""
    from .report import MarkdownTable, pct

    rows = []
    for r in reports:
        v = {c.name: c.values for c in r.checks}
        rows.append([r.name, pct(r.clean_accuracy), pct(v["iterative beats single-step"]["fgsm"]),
                     pct(v["iterative beats single-step"]["iterative"]),
                     pct(v["white-box beats transfer"]["transfer"]) if "white-box beats transfer" in v else "—",
                     pct(v["white-box beats black-box"]["square"]), pct(r.robust_accuracy),
                     pct(v["few zero gradients"]["zero_fraction"]),
                     ", ".join(r.flags) if r.flags else "none"])
    return MarkdownTable(["model", "clean", "FGSM", "PGD", "transfer", "Square", "worst case", "zero ∇",
                          "audit flags"], rows)


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


def distill(student: nn.Module, x: torch.Tensor, soft: torch.Tensor, temperature: float, *, epochs: int,
            batch_size: int = 128, lr: float = 1e-3, seed: int = 0, progress: bool = True) -> dict:
    """Train ``student`` in place on soft labels at a temperature (Hinton et al. 2015; Papernot et al. 2016).

    Minimises the cross-entropy between ``soft`` (N, K) probabilities and
    ``softmax(student(x) / T)``, with ``x`` (N, C, H, W) in [0, 1]. Returns the
    per-epoch loss (``loss``) and agreement with the soft labels' argmax (``train_acc``).
    """
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    device = next(student.parameters()).device
    hist = {"loss": [], "train_acc": []}
    bar = tqdm(total=epochs * math.ceil(len(x) / batch_size), desc=f"distil (T = {temperature:g})",
               disable=not progress, leave=False)
    for _ in range(epochs):
        total, agree = 0.0, 0
        for idx in torch.randperm(len(x), generator=gen).split(batch_size):
            xb, pb = x[idx].to(device), soft[idx].to(device)
            student.train()
            z = student(xb)
            loss = -(pb * F.log_softmax(z / temperature, dim=1)).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            agree += (z.argmax(1) == pb.argmax(1)).sum().item()
            bar.update(1)
        hist["loss"].append(total / len(x))
        hist["train_acc"].append(agree / len(x))
    bar.close()
    student.eval()
    return hist


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

    def fit(model, cfg):
        if kind == "distilled":
            teacher, _ = train_model("teacher", x, y, data_tag=data_tag, epochs=epochs, seed=seed, device=device,
                                     temperature=temperature, channels=channels, hidden=hidden, lr=lr,
                                     progress=progress)
            with eval_mode(teacher), torch.no_grad():
                soft = torch.cat([F.softmax(teacher(xb.to(device)) / temperature, 1).cpu() for xb in x.split(512)])
            return distill(model, x, soft, temperature, epochs=epochs, lr=lr, seed=seed, progress=progress)
        kw = {}
        if kind == "teacher":
            kw["loss_fn"] = lambda z, t: F.cross_entropy(z / temperature, t)
        if kind == "adversarial":
            kw["adversary"] = lambda m, xb, yb: pgd(m, xb, yb, eps, alpha=1.25 * eps, steps=1, random_start=True)
            kw["clean_weight"] = 0.0
        hist = train(model, x, y, epochs=epochs, lr=lr, seed=seed, progress=progress, desc=f"{kind} CNN", **kw)
        return {k: hist[k] for k in ("loss", "train_acc", "seconds")}

    return load_or_train(f"ch06-{kind}-{data_tag}", config, _build, fit, device=device)


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
    return float((_correct(model, x, y) & _correct(model, x_adv, y)).float().mean())


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
    params = list(model.body.parameters()) + list(model.heads[task].parameters())
    opt = torch.optim.Adam(params, lr=lr)
    hooks = [p.register_hook(lambda g, m=m: g * m) for p, m in (mask or {}).items()]
    gen = torch.Generator().manual_seed(seed)
    try:
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=gen).split(batch_size):
                loss = F.cross_entropy(model(x[idx], task), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
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
        model = copy_model(base)
        if m is not None:
            m = {q: m[p] for p, q in zip(base.body.parameters(), model.body.parameters())}
        _fit_task(model, xb, yb, 1, epochs, seed + 1, mask=m, lr=lr_b)
        out[name] = {"A": _task_accuracy(model, ta, la, 0), "B": _task_accuracy(model, tb, lb, 1)}
    out["protected"] = float(1 - torch.cat([m.flatten() for m in mask.values()]).mean())
    return out


def copy_model(model: nn.Module) -> nn.Module:
    """A deep copy of ``model``."""
    import copy

    return copy.deepcopy(model)


def masked_zoo(standard: nn.Module, distilled: nn.Module, *, scale: float = 100.0, levels: int = 8,
               shift: int = 1, noise: float = 0.2) -> dict:
    """The chapter's masked models, built around the trained ``standard`` CNN, in eval mode:
    the distilled CNN, the standard one with logits × ``scale``, behind a quantiser with
    ``levels`` grey levels, and behind a random shift (± ``shift`` px) and Gaussian noise."""
    from .masked_models import Preprocessed, Quantise, Randomised, ScaledLogits

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
