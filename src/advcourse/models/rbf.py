"""A shallow radial-basis-function network (Goodfellow et al. 2015, §7).

One RBF unit per class, each an independent detector
p(y = c | x) = exp(−‖β_c ⊙ (x − μ_c)‖²) in (0, 1]. Far from every centre all
outputs are close to 0: the model can only be confident near a centre, which is
why it is unconfident on the adversarial and rubbish examples that fool linear models.
"""

import torch
from torch import nn


class RBFNetwork(nn.Module):
    """Log-outputs z_c = log p_c = −‖β_c ⊙ (x − μ_c)‖², for images (N, C, H, W).

    ``forward`` returns z (N, classes), which the attacks use as logits; the
    model's own confidence in class c is ``probabilities(x)[:, c] = exp(z_c)``
    (not a softmax: the outputs need not sum to one). Train it with ``rbf_loss``.

    ``centres`` (num_classes, d) start at the class means when given, β at ``beta0``.
    """

    def __init__(self, in_features: int = 784, num_classes: int = 10,
                 centres: torch.Tensor | None = None, beta0: float = 0.3):
        super().__init__()
        mu = torch.rand(num_classes, in_features) if centres is None else centres.reshape(num_classes, -1).clone()
        if mu.shape != (num_classes, in_features):
            raise ValueError(f"centres must have shape ({num_classes}, {in_features}), got {tuple(mu.shape)}")
        self.mu = nn.Parameter(mu)
        self.beta = nn.Parameter(torch.full((num_classes, in_features), float(beta0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        diff = x.flatten(1).unsqueeze(1) - self.mu  # (N, classes, d)
        return -(self.beta * diff).pow(2).sum(dim=2)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """p_c(x) = exp(z_c) in (0, 1] for every class, shape (N, classes)."""
        return self.forward(x).exp()


def rbf_loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One-vs-rest log loss of independent detectors with log-outputs ``z`` (N, K).

    −log p_y − Σ_{c≠y} log(1 − p_c), averaged over the batch; log(1 − e^z) is
    computed as log(−expm1(z)) for accuracy when p_c is close to 0 or 1.
    """
    onehot = torch.nn.functional.one_hot(y, z.shape[1]).bool()
    log_not = torch.log(-torch.expm1(z.clamp(max=-1e-6)))
    return -(torch.where(onehot, z, log_not)).sum(dim=1).mean()
