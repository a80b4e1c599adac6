"""The two MNIST CNNs of the benchmark, trained on the embedded MNIST and cached.

* ``undefended``: standard training;
* ``fgsm-at``: FGSM adversarial training at eps = 0.3 with Goodfellow et al.'s mixed
  objective  0.5 * J(x, y) + 0.5 * J(x + 0.3 sign(grad_x J), y).

Both are cached with :func:`advcourse.cache.load_or_train` (folder ``$ADVCOURSE_CACHE``),
so only the first benchmark run pays for training.
"""

from __future__ import annotations

import functools

import torch

from advcourse.attacks import fgsm
from advcourse.cache import load_or_train
from advcourse.evaluate import accuracy
from advcourse.models.cnn import MnistCNN
from advcourse.train import train

# name -> training configuration (part of the cache key)
CONFIGS = {
    "undefended": dict(arch="MnistCNN(16,32,100)", epochs=8, batch_size=64, lr=2e-3, adv_eps=0.0, seed=0),
    "fgsm-at": dict(arch="MnistCNN(16,32,100)", epochs=10, batch_size=64, lr=2e-3, adv_eps=0.3,
                    clean_weight=0.5, seed=0),
}


def _build(config: dict) -> torch.nn.Module:
    torch.manual_seed(config["seed"])
    return MnistCNN(channels=(16, 32), hidden=100)


def _fit(model: torch.nn.Module, config: dict, data) -> dict:
    eps = config["adv_eps"]
    adversary = functools.partial(fgsm, eps=eps) if eps > 0 else None
    history = train(model, data.x_train, data.y_train, epochs=config["epochs"], batch_size=config["batch_size"],
                    lr=config["lr"], adversary=adversary, clean_weight=config.get("clean_weight", 0.5),
                    seed=config["seed"], progress=True, desc=f"train (adv eps={eps})")
    return {"test_accuracy": accuracy(model, data.x_test, data.y_test), "train_seconds": history["seconds"]}


def load_model(name: str, data) -> tuple[torch.nn.Module, dict]:
    """The trained model ``name`` (a key of :data:`CONFIGS`) in eval mode, and its cache metadata."""
    config = CONFIGS[name]
    model, meta = load_or_train(f"bench-mnist-cnn-{name}", config, _build,
                                lambda m, c: _fit(m, c, data), device="cpu")
    # The parameters keep requires_grad=True, as a trained model comes to a user: an attack
    # that calls loss.backward() instead of differentiating w.r.t. the input pays for it.
    return model.eval(), meta
