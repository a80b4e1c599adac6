"""Auto-PGD (APGD) and the DLR loss, Croce & Hein 2020 ("Reliable evaluation of adversarial
robustness with an ensemble of diverse parameter-free attacks", ICML 2020).

APGD is PGD with momentum whose step size needs no tuning: it starts at 2 eps and is halved at
fixed checkpoints when the loss stopped rising, each time restarting from the best point found
(Algorithm 1, Section 3).  The DLR loss (Section 4) is invariant to shifting and rescaling the
logits, so it keeps its gradient on models whose logits are large or saturated.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._utils import bview, clamp_linf, l2_norm, linf_bounds, margin, project_l2, project_l2_exact, write_rows
from ._validate import check_choice, check_inputs, check_logits, check_nonneg, check_norm, check_positive_int, eval_mode
from .pgd import _better, _random_start

__all__ = ["apgd", "apgd_targeted", "apgd_checkpoints", "dlr_loss"]

_MOMENTUM = 0.75  # alpha of Algorithm 1: weight of the new step against the previous one
_RHO = 0.75  # Condition 1: halve when the loss rose in fewer than rho of the steps since the last checkpoint


def dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """The Difference of Logits Ratio loss (Croce & Hein 2020, Section 4), per example, shape (N,).

    With ``z`` the logits sorted so that ``z_pi1 >= z_pi2 >= ...``:

    * untargeted: ``DLR(x, y) = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``;
    * targeted at ``t``: ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``.

    The attack maximises it.  Both are unchanged when every logit is shifted by the same amount
    or multiplied by the same positive factor; ``1e-12`` in the denominator avoids 0 / 0.

    Args:
        logits: (N, K) logits, K >= 3 (K >= 4 with ``target``).
        y: true labels (N,) long in [0, K).
        target: target labels (N,) long in [0, K), or None for the untargeted loss.

    Returns:
        Tensor (N,) with the dtype of ``logits``.

    Raises:
        ValueError: ``logits`` has fewer than 3 classes (4 with ``target``).

    Examples:
        >>> import torch
        >>> from advcourse.attacks import dlr_loss
        >>> z, y = torch.tensor([[3.0, 1.0, 0.0, -1.0]]), torch.tensor([0])
        >>> round(dlr_loss(z, y).item(), 4), round(dlr_loss(10 * z + 5, y).item(), 4)  # -(3 - 1) / (3 - 0)
        (-0.6667, -0.6667)
    """
    need = 3 if target is None else 4
    if logits.ndim != 2 or logits.shape[1] < need:
        kind = "targeted DLR loss" if target is not None else "DLR loss (loss='dlr')"
        raise ValueError(f"the {kind} needs logits (N, K) with K >= {need} classes, got {tuple(logits.shape)}")
    z = logits.sort(dim=1, descending=True).values
    if target is None:
        return -margin(logits, y) / (z[:, 0] - z[:, 2] + 1e-12)
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    return -(z_y - z_t) / (z[:, 0] - 0.5 * (z[:, 2] + z[:, 3]) + 1e-12)


def apgd_checkpoints(steps: int) -> list[int]:
    """APGD's checkpoints ``W = {w_0, w_1, ...}``: the iterations where the step may be halved.

    ``w_j = ceil(p_j * steps)`` with ``p_0 = 0``, ``p_1 = 0.22`` and
    ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` (Croce & Hein 2020, Section 3.2): the
    first interval is 22% of the budget, each next one 3 points shorter, down to 6%.  Values
    that coincide after rounding (few steps) appear once; only ``w_j <= steps`` are kept.

    Args:
        steps: the iteration budget ``N_iter``, int >= 0.

    Returns:
        Increasing list of ints starting with 0.

    Raises:
        TypeError: ``steps`` is not an int.
        ValueError: ``steps < 0``.

    Examples:
        >>> from advcourse.attacks import apgd_checkpoints
        >>> apgd_checkpoints(100)
        [0, 22, 41, 57, 70, 80, 87, 93, 99]
    """
    steps = check_positive_int(steps, "steps", allow_zero=True)
    out, prev, p = [0], 0, 22  # p_j in hundredths, so the sums are exact
    while p <= 100:
        w = -(-p * steps // 100)  # ceil(p * steps / 100) in integers
        if out[-1] < w <= steps:
            out.append(w)
        prev, p = p, p + max(p - prev - 3, 6)
    return out


def _value_and_grad(model, xa, loss_fn, success_fn, labels, need_grad):
    """Objective (N,), its input gradient (or None) and the success flags at ``xa``: one forward pass."""
    xr = xa.detach().requires_grad_(need_grad)
    with torch.enable_grad():
        z = model(xr)
        f = loss_fn(z, *labels)
    g = torch.autograd.grad(f.sum(), xr)[0] if need_grad else None
    return f.detach(), g, success_fn(z.detach(), *labels)


def _run(model, x, labels, *, eps, norm, steps, restarts, loss_fn, success_fn, early_stop, generator):
    """Algorithm 1 of Croce & Hein 2020 for every example, with restarts: (best point, its success) per example.

    ``labels`` is a tuple of per-example tensors (N,) passed to ``loss_fn(logits, *labels)`` (the
    objective to maximise, (N,)) and ``success_fn(logits, *labels)`` (bool (N,)).  The caller has
    validated the arguments and put the model in eval mode.

    The clean ``x`` competes for the returned point like any iterate (:func:`_better`: a successful
    point beats an unsuccessful one, then the higher objective wins).  Restart 0 runs on every
    example, each later one only on those whose best point is not yet successful; each starts at
    a uniform random point of the ball.  Within a restart the examples form a compacted batch: with
    ``early_stop`` an example leaves it (and costs no more model evaluations) once its current
    iterate is successful.  Per example the state is the current point ``xa`` and the one before
    ``x_prev``, the gradient ``g``, the step ``eta``, the best point of the restart ``x_max`` with
    its objective and gradient (where a halving restarts from), and the checkpoint bookkeeping.
    """
    x = x.detach()
    n = x.shape[0]
    with torch.no_grad():
        logits0 = model(x)
    check_logits(logits0, labels[0])
    best = x.clone()
    best_succ = success_fn(logits0, *labels)
    best_score = loss_fn(logits0, *labels)
    if eps == 0 or n == 0:
        return x.clone(), best_succ
    if norm == "inf":
        lo_all, hi_all = linf_bounds(x, eps)

    def project(v, s):
        return clamp_linf(v, s["lo"], s["hi"]) if norm == "inf" else project_l2(v, s["xs"], eps)

    def direction(g):
        return g.sign() if norm == "inf" else g / bview(l2_norm(g).clamp_min(1e-30), g)

    checkpoints = apgd_checkpoints(steps)
    interval = {w: w - v for v, w in zip(checkpoints, checkpoints[1:])}  # w_j -> w_j - w_{j-1}
    all_idx = torch.arange(n, device=x.device)
    for r in range(restarts):
        idx = all_idx if r == 0 else all_idx[~best_succ]
        if idx.numel() == 0:
            break
        s = {"idx": idx, "xs": x[idx], "labels": tuple(lab[idx] for lab in labels),
             "b_x": best[idx], "b_succ": best_succ[idx], "b_score": best_score[idx]}
        if norm == "inf":
            s["lo"], s["hi"] = lo_all[idx], hi_all[idx]
        xa = _random_start(s["xs"], eps, norm, generator)
        f, g, succ = _value_and_grad(model, xa, loss_fn, success_fn, s["labels"], steps > 0)
        s.update(xa=xa, x_prev=xa, g=g, f=f, succ=succ, x_max=xa, f_max=f, g_max=g,
                 eta=torch.full_like(f, 2.0 * eps),  # eta^(0) = 2 eps
                 n_up=torch.zeros_like(f), f_max_check=f, halved=torch.ones_like(succ))
        _keep_best(s)
        for k in range(steps):
            if early_stop and bool(s["succ"].any()):  # done examples leave the batch
                _write_back(s, best, best_succ, best_score)
                s = _compact(s, ~s["succ"])
                if s["idx"].numel() == 0:
                    break
            xa, x_prev = s["xa"], s["x_prev"]
            with torch.no_grad():
                z = project(xa + bview(s["eta"], xa) * direction(s["g"]), s)  # z^(k+1)
                if k > 0:  # x^(k+1) = P(x^(k) + alpha (z^(k+1) - x^(k)) + (1 - alpha)(x^(k) - x^(k-1)))
                    z = project(xa + _MOMENTUM * (z - xa) + (1 - _MOMENTUM) * (xa - x_prev), s)
            f, g, succ = _value_and_grad(model, z, loss_fn, success_fn, s["labels"], k + 1 < steps)
            with torch.no_grad():
                s["n_up"] = s["n_up"] + (f > s["f"]).to(f.dtype)
                s.update(x_prev=xa, xa=z, f=f, g=g, succ=succ)
                _keep_best(s)
                up = f > s["f_max"]
                s["x_max"] = torch.where(bview(up, z), z, s["x_max"])
                s["f_max"] = torch.where(up, f, s["f_max"])
                if g is not None:
                    s["g_max"] = torch.where(bview(up, g), g, s["g_max"])
                if k + 1 in interval:
                    _checkpoint(s, interval[k + 1])
        _write_back(s, best, best_succ, best_score)
    with torch.no_grad():
        if norm == "inf":
            return clamp_linf(best, lo_all, hi_all), best_succ
        return project_l2_exact(best, x, eps), best_succ


def _keep_best(s):
    """The returned point per example: the current iterate where it beats the best so far."""
    better = _better(s["succ"], s["f"], s["b_succ"], s["b_score"])
    s["b_x"] = torch.where(bview(better, s["xa"]), s["xa"], s["b_x"])
    s["b_succ"] = s["b_succ"] | s["succ"]
    s["b_score"] = torch.where(better, s["f"], s["b_score"])


def _checkpoint(s, length):
    """At checkpoint w_j: halve the step and go back to x_max where Condition 1 or 2 holds.

    Condition 1: the objective rose in fewer than ``rho * (w_j - w_{j-1})`` of the steps since
    w_{j-1}.  Condition 2: the step was not halved at w_{j-1} and the best objective has not
    improved since then.  (At w_1 the step counts as halved, so only Condition 1 can hold.)
    """
    cond1 = s["n_up"] < _RHO * length
    cond2 = ~s["halved"] & (s["f_max"] <= s["f_max_check"])
    h = cond1 | cond2
    s["eta"] = torch.where(h, s["eta"] / 2, s["eta"])
    s["xa"] = torch.where(bview(h, s["xa"]), s["x_max"], s["xa"])
    s["f"] = torch.where(h, s["f_max"], s["f"])
    if s["g"] is not None:
        s["g"] = torch.where(bview(h, s["g"]), s["g_max"], s["g"])
    s["halved"], s["f_max_check"], s["n_up"] = h, s["f_max"], torch.zeros_like(s["n_up"])


def _compact(s, keep):
    """The state of the examples in ``keep`` (bool over the batch) only."""
    return {key: tuple(t[keep] for t in v) if key == "labels" else None if v is None else v[keep]
            for key, v in s.items()}


def _write_back(s, best, best_succ, best_score):
    write_rows(s["idx"], (best, best_succ, best_score), (s["b_x"], s["b_succ"], s["b_score"]))


def _ce(logits, y):
    return F.cross_entropy(logits, y, reduction="none")


def _untargeted_success(logits, y, *_):
    return logits.argmax(1) != y


def _targeted_dlr_unknown_true(logits, t):
    """Targeted DLR when only the target is known: the class to beat is the strongest other one."""
    other = logits.masked_fill(F.one_hot(t, logits.shape[1]).bool(), float("-inf")).argmax(1)
    return dlr_loss(logits, other, t)


def _checks(model, x, y, eps, norm, steps, restarts):
    y = check_inputs(model, x, y)
    return (y, check_nonneg(eps, "eps"), check_norm(norm), check_positive_int(steps, "steps", allow_zero=True),
            check_positive_int(restarts, "restarts"))


def apgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    norm: str = "inf",
    *,
    steps: int = 100,
    restarts: int = 1,
    loss: str = "ce",
    targeted: bool = False,
    early_stop: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Auto-PGD, Croce & Hein 2020 (Algorithm 1): PGD with momentum and a self-tuned step size.

    Maximises ``loss`` over the ``norm``-ball of radius ``eps`` intersected with the box [0, 1]:

    * ``z^(k+1) = P(x^(k) + eta^(k) * s(grad f(x^(k))))`` with ``s = sign`` (L-inf) or
      ``g / ||g||_2`` (L2), and ``P`` the projection onto ball and box;
    * ``x^(k+1) = P(x^(k) + alpha (z^(k+1) - x^(k)) + (1 - alpha)(x^(k) - x^(k-1)))`` with
      ``alpha = 0.75`` (the first step has no momentum term);
    * ``eta^(0) = 2 eps``; at the checkpoints of :func:`apgd_checkpoints` the step is halved and
      the iterate set back to the best point of the run where Condition 1 (the loss rose in fewer
      than 75% of the steps since the last checkpoint) or Condition 2 (the step was not halved at
      the last checkpoint and the best loss has not improved since) holds (Section 3.2).

    Each restart starts at a uniform random point of the ball; restarts after the first run only
    on examples not yet fooled.  Per example the best point is returned (a misclassified one beats a
    correct one, then the higher loss).  One forward and one backward pass per step and example
    (the last step's point is only evaluated), plus one forward pass on the clean batch.

    Args:
        model: classifier returning logits (N, K); evaluated in eval mode, its previous mode is restored.
        x: images, float tensor (N, ...) with values in [0, 1].
        y: true labels (N,) int in [0, K); target labels if ``targeted``.
        eps: radius of the ``norm``-ball, >= 0 (``eps=0`` returns a copy of ``x``).
        norm: ``"inf"`` (default) or ``"2"`` (aliases such as ``"linf"``, ``"l2"`` accepted).
        steps: iterations per restart, int >= 0 (default 100, the paper's budget).
        restarts: random restarts, int >= 1 (default 1).
        loss: ``"ce"`` (cross-entropy, default) or ``"dlr"`` (:func:`dlr_loss`; K >= 3, K >= 4 targeted).
        targeted: reach class ``y`` instead of leaving it: ``-CE(z, y)``, or the targeted DLR loss where
            the class to beat is the strongest non-target class (the true class while the example is
            still classified correctly; :func:`apgd_targeted` runs the paper's APGD-T). Default False.
        early_stop: stop on an example once an iterate is misclassified (targeted: classified as ``y``);
            robust accuracy is unchanged and compute saved. Default True.
        generator: ``torch.Generator`` for the random starts (None: the global RNG).

    Returns:
        x_adv (N, ...) with the dtype/device of x, in [0, 1] with ``||x_adv - x|| <= eps``
        (L-inf exactly, L2 verified in float64).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``x``/``y`` have the wrong dtype, ``eps`` is not
            a real number, or ``steps``/``restarts`` are not ints.
        ValueError: ``x`` outside [0, 1], bad ``y``, ``eps`` negative or not finite, ``steps < 0``,
            ``restarts < 1``, unsupported ``norm`` or ``loss``, too few classes for ``"dlr"``, or
            the model does not return (N, K) logits.

    Examples:
        >>> import torch
        >>> from advcourse.models import MnistCNN
        >>> from advcourse.attacks import apgd
        >>> _ = torch.manual_seed(0)
        >>> model = MnistCNN().eval()
        >>> x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
        >>> gen = torch.Generator().manual_seed(0)
        >>> x_adv = apgd(model, x, y, eps=8 / 255, steps=10, loss="dlr", generator=gen)
        >>> x_adv.shape, bool((x_adv.double() - x.double()).abs().max() <= 8 / 255)
        (torch.Size([4, 1, 28, 28]), True)
        >>> x_l2 = apgd(model, x, y, eps=0.5, norm="2", steps=10, generator=gen)
        >>> bool(((x_l2 - x).flatten(1).norm(dim=1) <= 0.5 + 1e-6).all())
        True
    """
    y, eps, norm, steps, restarts = _checks(model, x, y, eps, norm, steps, restarts)
    check_choice(loss, "loss", ("ce", "dlr"))
    with eval_mode(model):
        if targeted:
            loss_fn = (lambda z, t: -_ce(z, t)) if loss == "ce" else _targeted_dlr_unknown_true
            success_fn = lambda z, t: z.argmax(1) == t  # noqa: E731
        else:
            loss_fn, success_fn = (_ce if loss == "ce" else dlr_loss), _untargeted_success
        x_adv, _ = _run(model, x, (y,), eps=eps, norm=norm, steps=steps, restarts=restarts, loss_fn=loss_fn,
                        success_fn=success_fn, early_stop=early_stop, generator=generator)
        return x_adv


def apgd_targeted(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    norm: str = "inf",
    *,
    steps: int = 100,
    n_target_classes: int = 9,
    restarts: int = 1,
    early_stop: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """APGD-T, Croce & Hein 2020 (Section 4): APGD on the targeted DLR loss, one target class at a time.

    An untargeted attack built from targeted runs: for ``j = 1 .. n_target_classes`` the target
    ``t_j`` of each example is its ``j``-th most likely class other than ``y`` on the clean input,
    and :func:`apgd` (``restarts`` runs of ``steps`` iterations each) maximises
    ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` (:func:`dlr_loss`) on the examples that no
    earlier target has fooled.  Success is any misclassification, as in AutoAttack.

    Args:
        model: classifier returning logits (N, K), K >= 4; evaluated in eval mode, its previous mode
            is restored.
        x: images, float tensor (N, ...) with values in [0, 1].
        y: true labels (N,) int in [0, K).
        eps: radius of the ``norm``-ball, >= 0.
        norm: ``"inf"`` (default) or ``"2"``.
        steps: APGD iterations per target and restart, int >= 0 (default 100).
        n_target_classes: how many target classes to try, int in [1, K - 1] (default 9, AutoAttack's).
        restarts: random restarts per target, int >= 1 (default 1).
        early_stop: stop on an example once an iterate is misclassified. Default True.
        generator: ``torch.Generator`` for the random starts (None: the global RNG).

    Returns:
        x_adv (N, ...) in [0, 1] and in the ``eps``-ball around x: per example the first point that
        fooled the model, else the last target's best point.

    Raises:
        TypeError: as :func:`apgd`, or ``n_target_classes`` is not an int.
        ValueError: as :func:`apgd`; the model has fewer than 4 classes, or ``n_target_classes``
            is outside [1, K - 1].

    Examples:
        >>> import torch
        >>> from advcourse.models import MnistCNN
        >>> from advcourse.attacks import apgd_targeted
        >>> _ = torch.manual_seed(0)
        >>> model = MnistCNN().eval()
        >>> x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
        >>> gen = torch.Generator().manual_seed(0)
        >>> x_adv = apgd_targeted(model, x, y, eps=0.1, steps=5, n_target_classes=3, generator=gen)
        >>> bool((x_adv.double() - x.double()).abs().max() <= 0.1)
        True
    """
    y, eps, norm, steps, restarts = _checks(model, x, y, eps, norm, steps, restarts)
    n_target_classes = check_positive_int(n_target_classes, "n_target_classes")
    with eval_mode(model):
        with torch.no_grad():
            logits0 = model(x.detach()) if x.shape[0] else None
        if logits0 is None:
            return x.detach().clone()
        check_logits(logits0, y)
        k = logits0.shape[1]
        if k < 4:
            raise ValueError(f"apgd_targeted needs a model with at least 4 classes (targeted DLR), got K={k}")
        if n_target_classes > k - 1:
            raise ValueError(f"n_target_classes must be in [1, K - 1] = [1, {k - 1}], got {n_target_classes}")
        # the other classes, most likely first on the clean input
        ranked = logits0.masked_fill(F.one_hot(y, k).bool(), float("-inf")).argsort(dim=1, descending=True)
        x_adv = x.detach().clone()
        todo = (logits0.argmax(1) == y).nonzero().squeeze(1)  # misclassified examples stay as they are
        for j in range(n_target_classes):
            if todo.numel() == 0:
                break
            xs, fooled = _run(model, x[todo], (y[todo], ranked[todo, j]), eps=eps, norm=norm, steps=steps,
                              restarts=restarts, loss_fn=dlr_loss, success_fn=_untargeted_success,
                              early_stop=early_stop, generator=generator)
            x_adv[todo] = xs
            todo = todo[~fooled]
        return x_adv
