"""advcourse: the package behind the course book *Adversarial Examples and the
Architectures Behind Them*.

Conventions shared by every module:

* images are float tensors in ``[0, 1]``; normalisation lives inside models;
* models return logits;
* attacks are plain functions ``attack(model, x, y, ...) -> x_adv``.
"""

__version__ = "0.1.0"

from .runtime import get_device, resolve_profile, seed_everything, start  # noqa: E402

__all__ = ["__version__", "get_device", "resolve_profile", "seed_everything", "start"]
