"""Defences the book trains and then tests: adversarial training's adversary, defensive
distillation, and the deliberately masked models of chapter 6 (with BPDA and EOT, the
adaptive attacks' wrappers that see through them)."""

from .adversarial import Adversary
from .distillation import distillation_loss, soft_labels, temperature_loss, train_distilled
from .masked import BPDA, EOT, Preprocessed, Quantise, Randomised, ScaledLogits, swap_activation

__all__ = ["Adversary", "distillation_loss", "soft_labels", "temperature_loss", "train_distilled",
           "BPDA", "EOT", "Preprocessed", "Quantise", "Randomised", "ScaledLogits", "swap_activation"]
