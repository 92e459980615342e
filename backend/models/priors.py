"""The two latent denoising networks of LION: output = prior(x_t, t, ...).

What the output means (noise, v, or the network half of LION's mixed score) is the config's
`diffusion.prediction`; `LionModel.shape_eps_model` / `point_eps_model` turn it into the noise
prediction samplers use. With the mixed score each network carries its `mixing_logit`
parameter (one per latent dimension), where the released checkpoints keep theirs.

Time-step convention: `t` is the 0-based step index of `backend.diffusion`, t in {0 .. T-1},
where x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps with abar_t = prod_{s<=t} (1 - beta_s).
The networks embed the 1-based step number t + 1, which is what the released LION priors were
trained on (their samplers call the network with `t + 1`), so converted official weights see
the same inputs. `t` may be an int or float tensor of shape [B] or a scalar (broadcast to B).
The networks know nothing else about sampling.
"""
import torch
import torch.nn.functional as F
from torch import nn

from backend.config import LatentPointPriorConfig, ShapeLatentPriorConfig
from backend.models.layers import SqueezeExcite, sinusoidal_embedding
from backend.models.pvcnn import PVCNNUNet


def _step_numbers(t, batch, device):
    """1-based float step numbers [B] from 0-based indices t (scalar or [B])."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"t must be a tensor of step indices, got {type(t).__name__}")
    if t.dim() == 0:
        t = t.expand(batch)
    if t.dim() != 1 or t.shape[0] != batch:
        raise ValueError(f"t must be a scalar or have shape [{batch}], got {tuple(t.shape)}")
    return t.to(device=device, dtype=torch.float32) + 1.0


class ResidualSEBlock(nn.Module):
    """x + SE(relu(W2 dropout(relu(W1 (x + time))))): one block of the z0 prior."""

    def __init__(self, channels: int, dropout: float):
        super().__init__()
        self.linear1 = nn.Linear(channels, channels)
        self.linear2 = nn.Linear(channels, channels)
        self.dropout = nn.Dropout(dropout)
        self.squeeze_excite = SqueezeExcite(channels)

    def forward(self, x, time):
        """x, time: float [B, C] -> float [B, C]."""
        h = self.dropout(F.relu(self.linear1(x + time)))
        return x + self.squeeze_excite(F.relu(self.linear2(h)))


class ShapeLatentPrior(nn.Module):
    """eps-prediction network of the z0 diffusion model (paper Table 8): a sinusoidal time
    embedding through two linear layers (no activation between them, as released), an input
    projection to the hidden width, residual squeeze-excitation blocks that add the time
    embedding, and an output projection."""

    def __init__(self, config: ShapeLatentPriorConfig, latent_dim: int, mixing_logit_init=None):
        super().__init__()
        self.latent_dim = latent_dim
        self.categories = list(config.categories)
        self.time_embedding_dim = config.time_embedding_dim
        self.time_in = nn.Linear(config.time_embedding_dim, config.time_hidden_channels)
        self.time_out = nn.Linear(config.time_hidden_channels, config.hidden_channels)
        self.input_proj = nn.Linear(latent_dim, config.hidden_channels)
        self.blocks = nn.ModuleList(
            ResidualSEBlock(config.hidden_channels, config.dropout) for _ in range(config.num_blocks))
        self.output_proj = nn.Linear(config.hidden_channels, latent_dim)
        if self.categories:
            # Row len(categories) is "no category": trained by dropping labels, used by guidance.
            self.category_embedding = nn.Embedding(len(self.categories) + 1, config.hidden_channels)
            nn.init.zeros_(self.category_embedding.weight)
        if mixing_logit_init is not None:
            self.mixing_logit = nn.Parameter(torch.full((latent_dim,), float(mixing_logit_init)))

    @property
    def no_category(self) -> int:
        """The label that means "any category" (the unconditional prediction)."""
        return len(self.categories)

    def forward(self, shape_latent, t, category=None):
        """shape_latent: noisy z_t, float [B, Dz]; t: 0-based step index, scalar or [B];
        category: int64 [B] labels in 0..len(categories) (the last: none), only for a
        class-conditioned prior (None there means none) -> output, float [B, Dz]."""
        if shape_latent.dim() != 2 or shape_latent.shape[1] != self.latent_dim:
            raise ValueError(f"shape_latent must have shape [B, {self.latent_dim}], got {tuple(shape_latent.shape)}")
        steps = _step_numbers(t, shape_latent.shape[0], shape_latent.device)
        time = self.time_out(self.time_in(sinusoidal_embedding(steps, self.time_embedding_dim)))
        if self.categories:
            if category is None:
                category = torch.full((shape_latent.shape[0],), self.no_category, dtype=torch.int64)
            time = time + self.category_embedding(category.to(shape_latent.device))
        elif category is not None:
            raise ValueError("this shape prior has no categories")
        x = self.input_proj(shape_latent)
        for block in self.blocks:
            x = block(x, time)
        return self.output_proj(x)


class LatentPointPrior(nn.Module):
    """eps-prediction network of the h0 diffusion model (paper Table 9): a PVCNN U-Net on the
    noisy latent points, conditioned on z0 through adaptive group norms and on the step through
    a sinusoidal embedding and a small MLP whose output joins the U-Net's features."""

    def __init__(self, config: LatentPointPriorConfig, point_dim: int, condition_dim: int,
                 init_scale: float = 0.1, num_points=None, mixing_logit_init=None):
        super().__init__()
        if mixing_logit_init is not None:
            self.mixing_logit = nn.Parameter(torch.full((num_points, point_dim), float(mixing_logit_init)))
        self.point_dim = point_dim
        self.condition_dim = condition_dim
        self.time_embedding_dim = config.time_embedding_dim
        dim = config.time_embedding_dim
        self.time_mlp = nn.Sequential(nn.Linear(dim, dim), nn.LeakyReLU(0.1), nn.Linear(dim, dim))
        self.unet = PVCNNUNet(config.unet, point_dim - 3, point_dim, condition_dim, time_channels=dim,
                              init_scale=init_scale)

    def forward(self, latent_points, t, shape_latent):
        """latent_points: noisy h_t, float [B, N, 3 + Dh]; t: 0-based step index, scalar or [B];
        shape_latent: the clean z0 it is conditioned on, float [B, Dz]
        -> predicted noise, float [B, N, 3 + Dh]."""
        if latent_points.dim() != 3 or latent_points.shape[-1] != self.point_dim:
            raise ValueError(
                f"latent_points must have shape [B, N, {self.point_dim}], got {tuple(latent_points.shape)}")
        batch = latent_points.shape[0]
        if shape_latent.dim() != 2 or tuple(shape_latent.shape) != (batch, self.condition_dim):
            raise ValueError(
                f"shape_latent must have shape [{batch}, {self.condition_dim}], got {tuple(shape_latent.shape)}")
        steps = _step_numbers(t, batch, latent_points.device)
        time = self.time_mlp(sinusoidal_embedding(steps, self.time_embedding_dim))
        out = self.unet(latent_points.transpose(1, 2), shape_latent, time)
        return out.transpose(1, 2)
