"""The point template (not in LION): z0 -> latent points in one pass.

An MLP maps a shape latent z0 [B, Dz] through the config's hidden widths (SiLU between) to
all N latent points [B, N, 3 + Dh] at once: point i is output row i, so the network learns a
fixed layout of the points over every shape. With `point_hidden_channels` the MLP's output is a
shape feature instead, and a small network shared by all points maps (feature, point i's
learned code) to point i. It is trained by matching its points to the
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
        self.per_point = bool(config.point_hidden_channels)
        if self.per_point:
            # The first per-point layer on [feature, code] is split in two, so that each part
            # is computed once per shape and once per point, not once per (shape, point).
            first = config.point_hidden_channels[0]
            self.codes = nn.Parameter(torch.randn(num_points, config.point_code_channels))
            self.feature_in = nn.Linear(width, first)
            self.code_in = nn.Linear(config.point_code_channels, first, bias=False)
            point_layers, point_width = [], first
            for hidden in config.point_hidden_channels[1:]:
                point_layers += [nn.SiLU(), nn.Linear(point_width, hidden)]
                point_width = hidden
            point_layers += [nn.SiLU(), nn.Linear(point_width, channels)]
            self.point_mlp = nn.Sequential(*point_layers)
        else:
            layers.append(nn.Linear(width, num_points * channels))
        self.mlp = nn.Sequential(*layers)

    def forward(self, shape_latent: torch.Tensor) -> torch.Tensor:
        if shape_latent.dim() != 2 or shape_latent.shape[1] != self.mlp[0].in_features:
            raise ValueError(f"shape_latent must be [B, {self.mlp[0].in_features}], got {tuple(shape_latent.shape)}")
        if not self.per_point:
            return self.mlp(shape_latent).view(-1, self.num_points, self.channels)
        hidden = self.feature_in(self.mlp(shape_latent))[:, None, :] + self.code_in(self.codes)[None]
        return self.point_mlp(hidden)
