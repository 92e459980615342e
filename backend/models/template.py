"""The point template (not in LION): z0 -> latent points in one pass.

An MLP maps a shape latent z0 [B, Dz] through the config's hidden widths (SiLU between) to
all N latent points [B, N, 3 + Dh] at once: point i is output row i, so the network learns a
fixed layout of the points over every shape. It is trained by matching its points to the
VAE's latent points of the same shape, nearest to nearest (`backend.train.template`); what it
makes is a latent-point set the decoder turns into the shape, as it does the h0 prior's.
"""
import torch
from torch import nn

from backend.config import PointTemplateConfig


class LatentPointTemplate(nn.Module):
    """latent points float [B, N, channels] = template(z0 float [B, Dz])."""

    def __init__(self, config: PointTemplateConfig, shape_latent_dim: int, num_points: int, channels: int):
        super().__init__()
        if not config.hidden_channels:
            raise ValueError("a point template needs at least one hidden width")
        self.num_points, self.channels = num_points, channels
        layers, width = [], shape_latent_dim
        for hidden in config.hidden_channels:
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, num_points * channels))
        self.mlp = nn.Sequential(*layers)

    def forward(self, shape_latent: torch.Tensor) -> torch.Tensor:
        if shape_latent.dim() != 2 or shape_latent.shape[1] != self.mlp[0].in_features:
            raise ValueError(f"shape_latent must be [B, {self.mlp[0].in_features}], got {tuple(shape_latent.shape)}")
        return self.mlp(shape_latent).view(-1, self.num_points, self.channels)
