"""The MNIST CNNs of the benchmark, trained on the embedded MNIST and cached.

* ``undefended``: standard training;
* ``fgsm-at``: FGSM adversarial training at eps = 0.3 in the form that does not collapse
  (Wong, Rice & Kolter 2020, "Fast is better than free"): each step's FGSM example starts
  from a uniform random point of the eps-ball and takes one signed step of 1.25 eps,
  eps ramps up linearly over the first epochs, and the epoch with the best PGD accuracy
  on 500 held-out training digits (50 per class) is kept.  Plain FGSM training at
  eps = 0.3 (Goodfellow et al.'s recipe) overfits catastrophically on this small set: its
  FGSM accuracy is high while PGD drives it to about 0%, which makes it useless for
  comparing attacks;
* ``ch04-pgd``: chapter 4's PGD-trained network (Madry et al.'s saddle-point training with
  PGD-5, width ×4, the chapter's fast profile), loaded or trained through the chapter's own
  :func:`advcourse.experiments.ch04_pgd_saddle_point.train_cnn`, so it shares the chapter's
  cache entry.

All are cached with :func:`advcourse.cache.load_or_train` (folder ``$ADVCOURSE_CACHE``),
so only the first benchmark run pays for training.
"""

from __future__ import annotations

import functools
import math

import torch

from advcourse.attacks import pgd
from advcourse.cache import load_or_train
from advcourse.evaluate import accuracy
from advcourse.experiments import ch04_pgd_saddle_point as chapter4
from advcourse.models.cnn import MnistCNN
from advcourse.train import train

# name -> training configuration (part of the cache key)
CONFIGS = {
    "undefended": dict(arch="MnistCNN(16,32,100)", epochs=8, batch_size=64, lr=2e-3, adv_eps=0.0, seed=0),
    "fgsm-at": dict(arch="MnistCNN(32,64,100)", epochs=30, batch_size=64, lr=2e-3, adv_eps=0.3,
                    fgsm_step=1.25, random_start=True, ramp_epochs=9, clean_weight=0.0,
                    val_digits=500, val_pgd_steps=20, val_pgd_alpha=0.03, seed=0),
    "ch04-pgd": dict(chapter4.FAST.recipe(), scale=chapter4.FAST.scale, method="pgd", eps=chapter4.EPS, seed=0),
}


def _describe(c: dict) -> str:
    if "method" in c:
        return (f"Chapter 4's network: PGD adversarial training (PGD-{c['steps']}, ε = {c['eps']}, "
                f"adversarial examples only) for {c['epochs']} epochs at width ×{c['scale']}, as the chapter's "
                "fast profile trains it.")
    if not c["adv_eps"]:
        return "Standard training (Adam, cross-entropy)."
    return (f"FGSM adversarial training from a random start (one signed step of {c['fgsm_step']:g} ε), ε ramped "
            f"up linearly over the first {c['ramp_epochs']} epochs, loss on the adversarial examples only; the "
            f"epoch with the best PGD-{c['val_pgd_steps']} accuracy on {c['val_digits']} held-out training digits "
            "is kept.")


# one sentence per model for the results file
DESCRIPTIONS = {name: _describe(config) for name, config in CONFIGS.items()}

_ARCHS = {"MnistCNN(16,32,100)": ((16, 32), 100), "MnistCNN(32,64,100)": ((32, 64), 100)}


class RampedFGSM:
    """FGSM from a random start with eps ramped linearly over ``ramp_batches`` batches.

    ``x_adv = Pi( x + U(-e, e) + step * e * sign(grad_x J) )`` with ``e`` the current eps,
    i.e. one PGD step from a random start (Wong et al. 2020, Algorithm 3).
    """

    def __init__(self, eps: float, step: float, ramp_batches: int):
        self.eps, self.step, self.ramp, self.calls = eps, step, max(ramp_batches, 1), 0

    def __call__(self, model, x, y):
        self.calls += 1
        e = self.eps * min(1.0, self.calls / self.ramp)
        return pgd(model, x, y, eps=e, alpha=self.step * e, steps=1, random_start=True)


def _build(config: dict) -> torch.nn.Module:
    torch.manual_seed(config["seed"])
    channels, hidden = _ARCHS[config["arch"]]
    return MnistCNN(channels=channels, hidden=hidden)


def _fit(model: torch.nn.Module, config: dict, data) -> dict:
    eps = config["adv_eps"]
    x, y = data.x_train, data.y_train
    fit = dict(epochs=config["epochs"], batch_size=config["batch_size"], lr=config["lr"], seed=config["seed"],
               progress=True, desc=f"train (adv eps={eps})")
    if eps > 0:
        n_val = config["val_digits"]  # the first training digits held out (class-interleaved: balanced)
        x_val, y_val, x, y = x[:n_val], y[:n_val], x[n_val:], y[n_val:]
        batches = math.ceil(len(x) / config["batch_size"])
        fit.update(adversary=RampedFGSM(eps, config["fgsm_step"], config["ramp_epochs"] * batches),
                   clean_weight=config["clean_weight"], x_val=x_val, y_val=y_val, keep_best=True,
                   val_adversary=functools.partial(pgd, eps=eps, alpha=config["val_pgd_alpha"],
                                                   steps=config["val_pgd_steps"], early_stop=True))
    history = train(model, x, y, **fit)
    return {"test_accuracy": accuracy(model, data.x_test, data.y_test), "train_seconds": history["seconds"],
            "best_epoch": history["best_epoch"]}


def load_model(name: str, data) -> tuple[torch.nn.Module, dict]:
    """The trained model ``name`` (a key of :data:`CONFIGS`) in eval mode, and its cache metadata."""
    config = CONFIGS[name]
    if "method" in config:  # chapter 4's model, from the chapter's own trainer (and cache entry)
        kw = {k: v for k, v in config.items() if k not in ("scale", "method")}
        model, meta = chapter4.train_cnn(data, scale=config["scale"], method=config["method"], **kw)
        meta = {**meta, "metrics": {**meta["metrics"], "test_accuracy": accuracy(model, data.x_test, data.y_test)}}
        return model.eval(), meta
    model, meta = load_or_train(f"bench-mnist-cnn-{name}", config, _build,
                                lambda m, c: _fit(m, c, data), device="cpu")
    # The parameters keep requires_grad=True, as a trained model comes to a user: an attack
    # that calls loss.backward() instead of differentiating w.r.t. the input pays for it.
    return model.eval(), meta
