"""LION's hierarchical VAE: shape-latent encoder, latent-point encoder and decoder.

A shape of N points x [B, N, 3] is encoded into a global shape latent z0 [B, Dz] and latent
points h0 [B, N, 3 + Dh] (a position near each input point plus Dh features); the decoder maps
(z0, h0) back to points [B, N, 3]. Posteriors are diagonal Gaussians given as (mean, log sigma).
"""
import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from backend.config import ShapeLatentEncoderConfig, VAEConfig
from backend.models.pvcnn import PVCNNUNet, SetAbstraction


def _check_points(name, points, channels=3):
    if not isinstance(points, torch.Tensor) or points.dim() != 3 or points.shape[-1] != channels:
        shape = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
        raise ValueError(f"{name} must be a float tensor [B, N, {channels}], got {shape}")
    if not points.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got {points.dtype}")


def _check_latent(name, latent, batch, dim):
    if not isinstance(latent, torch.Tensor) or tuple(latent.shape) != (batch, dim):
        shape = tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
        raise ValueError(f"{name} must be a float tensor [{batch}, {dim}], got {shape}")


def sample_gaussian(mean, log_sigma, generator: Optional[torch.Generator] = None):
    """mean + exp(log_sigma) * noise, noise ~ N(0, I); tensors of any equal shape.

    The noise is drawn on the generator's device and moved, so a CPU generator gives the same
    sample on every device."""
    device = generator.device if generator is not None else mean.device
    noise = torch.randn(mean.shape, generator=generator, device=device, dtype=mean.dtype)
    return mean + torch.exp(log_sigma) * noise.to(mean.device)


class ShapeLatentEncoder(nn.Module):
    """q(z0 | x): set-abstraction stages with plain group norms, a max-pool over the last
    centers and a linear layer to [mean, log sigma]."""

    def __init__(self, config: ShapeLatentEncoderConfig, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.stages = nn.ModuleList()
        channels = 3
        for stage in config.stages:
            self.stages.append(SetAbstraction(channels, stage, condition_dim=0, dropout=config.dropout))
            channels = self.stages[-1].out_channels
        self.to_posterior = nn.Linear(channels, 2 * latent_dim)

    def forward(self, points):
        """points: float [B, N, 3] -> (mean, log_sigma), each float [B, latent_dim]."""
        coords = points.transpose(1, 2)
        features = coords
        for stage in self.stages:
            features, coords = stage(features, coords)
        posterior = self.to_posterior(features.amax(dim=-1))
        return posterior[:, :self.latent_dim], posterior[:, self.latent_dim:]


class LatentPointEncoder(nn.Module):
    """q(h0 | x, z0): a PVCNN U-Net conditioned on z0 by adaptive group norms.

    Output channels per point: [xyz mean offset (3), xyz log sigma (3), feature mean (Dh),
    feature log sigma (Dh)]. The xyz mean is skip_weight * offset + x; every log sigma is
    lowered by log_sigma_offset so that a fresh encoder starts with a narrow posterior.
    """

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.feature_dim = config.point_feature_dim
        self.skip_weight = config.skip_weight
        self.log_sigma_offset = config.log_sigma_offset
        self.unet = PVCNNUNet(config.latent_point_encoder, 0, 2 * (3 + config.point_feature_dim),
                              config.shape_latent_dim, init_scale=config.adaptive_norm_init_scale)

    def forward(self, points, shape_latent):
        """points: float [B, N, 3]; shape_latent: float [B, Dz]
        -> (mean, log_sigma), each float [B, N, 3 + Dh]."""
        out = self.unet(points.transpose(1, 2), shape_latent).transpose(1, 2)
        dh = self.feature_dim
        xyz_mean = self.skip_weight * out[..., 0:3] + points
        mean = torch.cat([xyz_mean, out[..., 6:6 + dh]], dim=-1)
        log_sigma = torch.cat([out[..., 3:6], out[..., 6 + dh:6 + 2 * dh]], dim=-1) - self.log_sigma_offset
        return mean, log_sigma


class LatentPointDecoder(nn.Module):
    """p(x | h0, z0): a PVCNN U-Net on the latent points, conditioned on z0; the output is
    skip_weight * U-Net(h0) + the latent points' xyz."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.skip_weight = config.skip_weight
        self.unet = PVCNNUNet(config.decoder, config.point_feature_dim, 3, config.shape_latent_dim,
                              init_scale=config.adaptive_norm_init_scale)

    def forward(self, latent_points, shape_latent):
        """latent_points: float [B, N, 3 + Dh]; shape_latent: float [B, Dz] -> float [B, N, 3]."""
        out = self.unet(latent_points.transpose(1, 2), shape_latent).transpose(1, 2)
        return self.skip_weight * out + latent_points[..., :3]


@dataclass
class Encoding:
    """What `LionVAE.encode` returns. z0 tensors are float [B, Dz]; h0 tensors float [B, N, 3 + Dh].

    `shape_latent` is the z0 that conditioned the latent-point posterior (a sample, or the
    mean when encoding without sampling); `latent_points` is a sample of that posterior (or its
    mean). Pass both to `LionVAE.decode`.
    """

    shape_latent_mean: torch.Tensor
    shape_latent_log_sigma: torch.Tensor
    shape_latent: torch.Tensor
    latent_points_mean: torch.Tensor
    latent_points_log_sigma: torch.Tensor
    latent_points: torch.Tensor


class LionVAE(nn.Module):
    """The hierarchical VAE of LION (appendix Tables 5-7 of the paper)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.shape_latent_encoder = ShapeLatentEncoder(config.shape_latent_encoder, config.shape_latent_dim)
        self.latent_point_encoder = LatentPointEncoder(config)
        self.decoder = LatentPointDecoder(config)

    def encode(self, points, sample: bool = True, generator: Optional[torch.Generator] = None) -> Encoding:
        """Posteriors of a batch of shapes.

        points: float [B, N, 3] (normalized as the model was trained). With `sample`, z0 and h0
        are reparameterized samples (what training uses); without, they are the posterior means
        (deterministic, for interpolation and inversion). Returns an `Encoding`.
        """
        _check_points("points", points)
        z_mean, z_log_sigma = self.shape_latent_encoder(points)
        shape_latent = sample_gaussian(z_mean, z_log_sigma, generator) if sample else z_mean
        h_mean, h_log_sigma = self.latent_point_encoder(points, shape_latent)
        latent_points = self.sample_latent_points(h_mean, h_log_sigma, generator) if sample else h_mean
        return Encoding(z_mean, z_log_sigma, shape_latent, h_mean, h_log_sigma, latent_points)

    def sample_latent_points(self, mean, log_sigma, generator: Optional[torch.Generator] = None):
        """A posterior draw of the latent points float [B, N, 3 + Dh], with the config's extra
        noise on xyz: what the decoder and the point prior are trained on, and what pipelines
        feed them."""
        latent_points = sample_gaussian(mean, log_sigma, generator)
        extra = self.config.latent_point_noise
        if extra > 0:
            xyz = sample_gaussian(latent_points[..., :3], torch.full_like(mean[..., :3], math.log(extra)), generator)
            latent_points = torch.cat([xyz, latent_points[..., 3:]], dim=-1)
        return latent_points

    def decode(self, shape_latent, latent_points):
        """shape_latent: float [B, Dz]; latent_points: float [B, N, 3 + Dh] -> points float [B, N, 3]."""
        _check_points("latent_points", latent_points, 3 + self.config.point_feature_dim)
        _check_latent("shape_latent", shape_latent, latent_points.shape[0], self.config.shape_latent_dim)
        return self.decoder(latent_points, shape_latent)

    def forward(self, points, generator: Optional[torch.Generator] = None):
        """Training pass: points float [B, N, 3] -> (reconstruction float [B, N, 3], Encoding)
        with sampled latents."""
        encoding = self.encode(points, sample=True, generator=generator)
        return self.decode(encoding.shape_latent, encoding.latent_points), encoding
