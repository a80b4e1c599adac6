"""An automated audit of a robustness evaluation for the symptoms of gradient masking.

:func:`audit` runs the checklists of Carlini et al. 2019 ("On evaluating adversarial
robustness", §5) and Athalye et al. 2018 ("Obfuscated gradients give a false sense of
security", §3.1) on a model and returns an :class:`AuditReport`: one :class:`Check` per item,
with the measured evidence, the rule it was held to, and whether it passed.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field

import torch
from torch import nn

from ..evaluate import logits
from ..report import MarkdownTable
from ..runtime import device_of
from .fgsm import fgsm
from .gradients import input_gradient
from .pgd import pgd
from .square import square

__all__ = ["Check", "AuditReport", "audit", "audit_table"]

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
        rows = [[c.name, "pass" if c.passed else "**FAIL**", c.evidence, c.rule] for c in self.checks]
        # MarkdownTable escapes the "|" of evidence such as "max |Δ logit|", which would split a cell.
        return head + MarkdownTable(["check", "result", "evidence", "passes when"], rows).to_markdown()

    def __repr__(self) -> str:
        lines = [f"Audit of {self.name}: eps={self.eps:g}, n={self.n}, clean={self.clean_accuracy:.3f}, "
                 f"worst case={self.robust_accuracy:.3f}, passed={self.passed}"]
        lines += [f"  [{'pass' if c.passed else 'FAIL'}] {c.name}: {c.evidence}" for c in self.checks]
        return "\n".join(lines)


def _correct(model, x, y):
    """Bool (N,): prediction == label, in eval mode."""
    return logits(model, x, 500).argmax(1) == y


def _attack_correct(model, x, y, attack, eps):
    """Bool (N,) correct under ``attack(model, x, y, eps=eps)``, and the adversarial examples."""
    x_adv = attack(model, x, y, eps=eps)
    return _correct(model, x_adv, y), x_adv


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
        x: images (N, C, H, W) in [0, 1] (the Square attack needs H, W >= 2); the first
            ``n`` are used, moved to the model's device.
        y: labels (N,) int in [0, K).
        eps: the L∞ budget, >= 0.
        name: the model's name in the report. Default ``"model"``.
        substitute: a second model for the transfer check (10); None (default) skips it.
        attack: the white-box attack under audit, ``attack(model, x, y, eps=...) -> x_adv``;
            default PGD (cross-entropy, ``steps`` steps, random start, early stop).
        steps: PGD steps of the default attack, the unbounded attack and the transfer attack
            (default 10).
        restarts: random restarts of the stronger PGD in check 12, int >= 1 (default 2).
        more_steps: factor on ``steps`` for the stronger PGD in check 12 (default 2).
        square_queries: query budget of the Square attack in check 11 (default 200).
        eps_fractions: multiples of ``eps`` at which check 8 evaluates the attack (capped
            at 1; ``eps`` itself is always included). Default ``(0.25, 0.5, 1.0, 2.0)``.
        tol: slack for comparisons of accuracies (fractions in [0, 1]; default 0.03).
        zero_grad_tol: largest acceptable fraction of zero input gradients (default 0.05).
        n: use only the first ``n`` examples (None: all).
        generator: ``torch.Generator`` for the random starts and Square (None: global RNG).

    Returns:
        :class:`AuditReport`; its ``flags`` name the failed checks.

    Raises:
        ValueError: ``eps`` is negative (other arguments are checked by the attacks the
            audit runs, which raise on bad ``x``, ``y`` or budgets).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from advcourse.attacks import audit
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
        >>> x, y = torch.rand(8, 1, 8, 8), torch.arange(8)
        >>> report = audit(model, x, y, eps=0.1, steps=2, restarts=1, more_steps=1, square_queries=5)
        >>> len(report.checks), isinstance(report.passed, bool)  # 11 checks: no substitute given
        (11, True)
        >>> report["ε = 0 gives the clean accuracy"].passed
        True
    """
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    if n is not None:
        x, y = x[:n], y[:n]
    device = device_of(model)
    x, y = x.to(device), y.to(device)
    if attack is None:
        attack = functools.partial(pgd, steps=steps, early_stop=True, generator=generator)
    checks, correct = [], {}
    pc = lambda v: f"{100 * v:.1f}%"  # noqa: E731

    # 1. logits, not probabilities
    was_training = [m.training for m in model.modules()]
    z1 = logits(model, x, 500)
    z2 = logits(model, x, 500)
    probs = bool((z1 >= 0).all() and torch.allclose(z1.sum(1), torch.ones(len(z1), device=device), atol=1e-4))
    checks.append(Check("outputs are logits", not probs,
                        f"rows {'are' if probs else 'are not'} non-negative and summing to 1",
                        "the model's outputs are not probabilities", {"probabilities": probs}))
    k = z1.shape[1]

    # 2. eval mode
    changed = False
    if any(was_training) and torch.equal(z1, z2):  # a random model's outputs differ anyway
        # in the mode the model was handed over in, on a copy: a train-mode forward pass would
        # update the batch-norm statistics of the model under audit
        probe = copy.deepcopy(model)
        with torch.no_grad():
            zt = torch.cat([probe(xb) for xb in x.split(500)])
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
    checks.append(Check("ε = 0 gives the clean accuracy", acc0 == clean,
                        f"clean {pc(clean)}, attack at ε = 0 {pc(acc0)}", "the two are equal",
                        {"clean": clean, "eps0": acc0}))

    # 5. bounds
    correct["white-box"], x_adv = _attack_correct(model, x, y, attack, eps)
    dist = float((x_adv - x).abs().max()) if len(x) else 0.0
    in_box = bool(x_adv.min() >= 0 and x_adv.max() <= 1)
    checks.append(Check("examples within bounds", in_box and dist <= eps + 1e-6,
                        f"max ‖x_adv − x‖∞ = {dist:.4g} (ε = {eps:g}); {'inside' if in_box else 'outside'} [0, 1]",
                        "‖x_adv − x‖∞ ≤ ε and x_adv ∈ [0, 1]", {"linf": dist, "in_box": in_box}))
    white = float(correct["white-box"].float().mean())

    # 6. zero gradients
    norms = input_gradient(model, x, y).flatten(1).abs().sum(1)
    zero, median = float((norms == 0).float().mean()), float(norms.median())
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


def audit_table(reports):
    """One row per :class:`AuditReport`: clean, FGSM, white-box, transfer, Square and worst-case
    accuracy, the zero-gradient fraction and the failed checks.

    Summarises :func:`audit` runs, the checklist of Carlini et al. 2019 (§5) and Athalye
    et al. 2018 (§3.1), side by side ("—" in the transfer column when no substitute was given).

    Args:
        reports: iterable of :class:`AuditReport` (from :func:`audit`), one row each, in order.

    Returns:
        :class:`advcourse.report.MarkdownTable` with the columns model, clean, FGSM, PGD,
        transfer, Square, worst case, zero ∇ and audit flags.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from advcourse.attacks import audit, audit_table
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
        >>> x, y = torch.rand(8, 1, 8, 8), torch.arange(8)
        >>> report = audit(model, x, y, eps=0.1, name="linear", steps=2, restarts=1, more_steps=1, square_queries=5)
        >>> table = audit_table([report])
        >>> table.headers[:3], len(table.rows), table.rows[0][0]
        (['model', 'clean', 'FGSM'], 1, 'linear')
    """
    from ..report import MarkdownTable, pct

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


