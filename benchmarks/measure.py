"""Timing and the per-library metrics of one attack.

Metrics, all computed here the same way for every library from its returned ``x_adv``:

* robust accuracy: fraction of the N images classified correctly at ``x_adv``;
* success rate: fraction of the clean-correct images misclassified at ``x_adv``;
* median L2 on the *commonly fooled* images (fooled by every library on this attack; a library
  that fooled no image is left out of that intersection and shows n/a);
* eps-ball violations (L-inf attacks): images with ``max |x_adv - x| > eps``, computed in
  float64 from the float32 tensors and compared with eps as a double -- no tolerance;
* box violations: images with a value outside [0, 1] (or not finite);
* overhead factor: median wall time / (nominal steps x one forward+backward of the batch);
* model rows per image: how many times the model saw each image (all forward passes);
* model-only time (advcourse's PGD and C&W): the model's calls of each repeat replayed on the
  bare model right after the attack, each call with a gradient as one forward + one
  input-gradient backward (median over the repeats) -- the time the attack would take with no
  work of its own, which bounds its speed-up.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F


def sync(device) -> None:
    """Wait for the GPU's queued work, so that a wall time covers it (a no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def fwd_bwd_seconds(model, x: torch.Tensor, y: torch.Tensor, repeats: int = 7) -> float:
    """Median time of one forward + backward (input gradient of the CE loss) on the batch."""
    times = []
    for r in range(repeats + 2):  # two warm-ups
        xr = x.clone().requires_grad_(True)
        sync(x.device)
        start = time.perf_counter()
        with torch.enable_grad():
            loss = F.cross_entropy(model(xr), y, reduction="sum")
            torch.autograd.grad(loss, xr)
        sync(x.device)
        if r >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def model_seconds(model, x: torch.Tensor, y: torch.Tensor, calls: list[tuple[int, bool]]) -> float:
    """Wall time of replaying ``calls`` [(rows, with gradient)] on ``model`` with rows of ``x``:
    forward only, or forward + backward of the summed CE loss to the input."""
    n = len(x)
    batches = {rows: (x[torch.arange(rows) % n], y[torch.arange(rows) % n]) for rows, _ in calls}
    sync(x.device)
    start = time.perf_counter()
    for rows, grad in calls:
        xb, yb = batches[rows]
        if grad:
            xr = xb.clone().requires_grad_(True)
            with torch.enable_grad():
                torch.autograd.grad(F.cross_entropy(model(xr), yb, reduction="sum"), xr)
        else:
            with torch.no_grad():
                model(xb)
    sync(x.device)
    return time.perf_counter() - start


def seed_all(seed: int) -> None:
    """The peers draw their random starts from the global torch / numpy generators."""
    torch.manual_seed(seed)
    np.random.seed(seed)


@dataclasses.dataclass
class Run:
    """What one library's attack produced: every repeat's wall time and robust accuracy (each
    repeat seeds the random starts differently), the first repeat's outputs."""

    library: str
    seconds: list = dataclasses.field(default_factory=list)
    robust: list = dataclasses.field(default_factory=list)  # robust accuracy of every repeat
    x_adv: torch.Tensor | None = None
    rows: int = 0
    error: str | None = None

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")


def timed_run(adapter, target, x, y, settings, run: Run) -> None:
    """Run ``adapter`` once, append its wall time and robust accuracy to ``run``; keep the
    outputs of the first repeat.  ``settings.seed`` seeds every random start."""
    seed_all(settings.seed)
    target.torch.rows, target.torch.calls = 0, []
    sync(x.device)
    start = time.perf_counter()
    try:
        x_adv = adapter(target, x.clone(), y.clone(), settings)
        sync(x.device)
    except Exception as err:  # a peer failing is a result, not a crash of the benchmark
        run.error = f"{type(err).__name__}: {err}"
        return
    run.seconds.append(time.perf_counter() - start)
    x_adv = torch.as_tensor(x_adv).detach().to(x.dtype).reshape(x.shape).cpu()
    if run.x_adv is None:
        run.x_adv = x_adv
        run.rows = target.torch.rows
    run.robust.append(float((_predict(target.torch.model, x_adv) == y.cpu()).float().mean()))


@dataclasses.dataclass
class Metrics:
    library: str
    seconds: float
    examples_per_second: float
    overhead: float | None
    robust_accuracy: float  # mean over the repeats
    robust_sem: float  # its standard error (0 with one repeat)
    success_rate: float
    median_l2_common: float
    eps_violations: int | None
    box_violations: int
    rows_per_image: float
    model_seconds: float | None = None  # the bare model's time for this library's calls, if replayed
    error: str | None = None


@torch.no_grad()
def _predict(model, x, batch_size=1000):
    """Predicted labels on the CPU (the model evaluates on its own device)."""
    device = next(model.parameters()).device
    return torch.cat([model(xb.to(device)).argmax(1).cpu() for xb in x.split(batch_size)])


def summarise(model, x, y, runs: list[Run], *, eps: float | None, steps: int | None,
              fwd_bwd: float, model_only: dict | None = None) -> list[Metrics]:
    """Metrics of every library on one attack (``eps`` None: no eps-ball; ``steps`` None: no overhead;
    ``model_only``: library -> its model-only time, where it was measured)."""
    x, y = x.cpu(), y.cpu()
    clean_ok = _predict(model, x) == y
    done = [r for r in runs if r.x_adv is not None]
    fooled = {r.library: clean_ok & (_predict(model, r.x_adv) != y) for r in done}
    common = _common(clean_ok, fooled)
    out = []
    for r in runs:
        if r.x_adv is None:
            nan = float("nan")
            out.append(Metrics(r.library, nan, nan, None, nan, nan, nan, nan, None, 0, nan, r.error))
            continue
        d = r.x_adv.double() - x.double()
        l2 = d.flatten(1).norm(dim=1)
        finite = torch.isfinite(r.x_adv).flatten(1).all(1)
        in_box = ((r.x_adv >= 0) & (r.x_adv <= 1)).flatten(1).all(1) & finite
        t = r.median_seconds
        out.append(Metrics(
            library=r.library,
            seconds=t,
            examples_per_second=len(x) / t,
            overhead=t / (steps * fwd_bwd) if steps else None,
            robust_accuracy=statistics.fmean(r.robust),
            robust_sem=statistics.stdev(r.robust) / len(r.robust) ** 0.5 if len(r.robust) > 1 else 0.0,
            success_rate=float(fooled[r.library].sum() / clean_ok.sum().clamp(min=1)),
            median_l2_common=float(l2[common].median()) if common.any() and fooled[r.library].any() else float("nan"),
            eps_violations=int((d.abs().flatten(1).amax(1) > eps).sum()) if eps is not None else None,
            box_violations=int((~in_box).sum()),
            rows_per_image=r.rows / len(x),
            model_seconds=(model_only or {}).get(r.library),
        ))
    return out


def _common(clean_ok, fooled: dict) -> torch.Tensor:
    """Images fooled by every library that fooled any (a library that fooled none has no L2 to compare)."""
    masks = [f for f in fooled.values() if f.any()]
    return torch.stack(masks).all(0) if masks else clean_ok & False


def common_count(model, x, y, runs: list[Run]) -> int:
    """How many images are in the common set the median L2 is taken over."""
    x, y = x.cpu(), y.cpu()
    clean_ok = _predict(model, x) == y
    return int(_common(clean_ok, {r.library: clean_ok & (_predict(model, r.x_adv) != y)
                                  for r in runs if r.x_adv is not None}).sum())
