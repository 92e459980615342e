"""What training the point-to-oriented-points network is made of: batches and the indicator loss.

Supervision is the Shape As Points one: the Poisson indicator of the network's oriented points
should match the indicator of the clean surface (the same solver run on a dense, oriented,
clean sample of it). The training loop is the sap stage's (`python -m backend.train sap`,
backend/train/sap.py), which builds batches from its data with these functions; they know
nothing about files.
"""
import dataclasses

import numpy as np
import torch
from torch.nn import functional as F

from backend.sap.frame import fit_unit_cube
from backend.sap.normals import DEFAULT_NEIGHBOURS, estimate_oriented_normals
from backend.sap.poisson import DEFAULT_RESOLUTION, DEFAULT_SIGMA, solve_indicator


@dataclasses.dataclass
class TrainingBatch:
    """Noisy input points and the clean oriented surface they came from, one frame per shape.

    noisy_points: float32 [B, N, 3]; surface_points: float32 [B, M, 3] (dense, M >> N is best);
    surface_normals: float32 [B, M, 3], outward. Any position and scale per shape.
    """

    noisy_points: torch.Tensor
    surface_points: torch.Tensor
    surface_normals: torch.Tensor

    def __post_init__(self):
        for name in ("noisy_points", "surface_points", "surface_normals"):
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor) or value.ndim != 3 or value.shape[-1] != 3:
                raise ValueError(f"{name} must be a tensor of shape [B, *, 3]")
            if not torch.isfinite(value).all():
                raise ValueError(f"{name} contains NaN or infinite values")
        if self.surface_normals.shape != self.surface_points.shape:
            raise ValueError("surface_normals must have the shape of surface_points")
        if self.noisy_points.shape[0] != self.surface_points.shape[0]:
            raise ValueError("noisy_points and surface_points must hold the same number of shapes")

    def to(self, device):
        """The same batch with every tensor on device."""
        return TrainingBatch(*(getattr(self, f.name).to(device) for f in dataclasses.fields(self)))


def estimate_surface_normals(surface_points, neighbours=DEFAULT_NEIGHBOURS):
    """Outward normals for clean point samples that come without them (e.g. ShapeNet PC15k).

    surface_points: float [B, M, 3] (tensor). Returns float32 [B, M, 3] unit normals on the
    same device, estimated and oriented per shape (backend.sap.normals).
    """
    shapes = surface_points.detach().cpu().double().numpy()
    normals = np.stack([estimate_oriented_normals(shape, neighbours) for shape in shapes])
    return torch.from_numpy(normals).float().to(surface_points.device)


def make_training_batch(surface_points, surface_normals, input_count, noise, generator=None):
    """Draw noisy network inputs from clean oriented surface samples.

    surface_points, surface_normals: float32 [B, M, 3]. input_count: points per shape (<= M).
    noise: standard deviation of the Gaussian noise as a fraction of each shape's largest
    bounding-box side (SAP trains at 0.005 of the unit cube). generator: torch.Generator or None.
    Returns a TrainingBatch with noisy_points [B, input_count, 3].
    """
    batch, count, _ = surface_points.shape
    if not 1 <= input_count <= count:
        raise ValueError(f"input_count must be in [1, {count}], got {input_count}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    choice = torch.rand(batch, count, generator=generator).argsort(dim=1)[:, :input_count].to(surface_points.device)
    chosen = torch.gather(surface_points, 1, choice.unsqueeze(-1).expand(-1, -1, 3))
    return TrainingBatch(_jitter(chosen, surface_points, noise, generator), surface_points, surface_normals)


def make_reconstructed_training_batch(autoencoder, surface_points, surface_normals, input_count, noise,
                                      generator=None, template=None, template_share=0.0):
    """Network inputs as LION makes them: `input_count` clean surface points per shape, encoded
    by `autoencoder` (a LION VAE: a posterior sample of both latents) and decoded, then
    Gaussian noise as in make_training_batch. Generated shapes come out of the same decoder, so
    the network learns its clumps, gaps and thin-part scatter, which plain noise lacks.

    template: the model's point template (LatentPointTemplate) or None. A random `template_share`
    of the shapes (0..1) take their latent points from it, given the posterior mean of the
    shape latent, as fresh samples do: those clouds are diffuse where the surface is thin (a
    seat spreads into a slab), which reconstructions never are. (A network met with only
    reconstructions keeps the legs of generated chairs and loses seat and back; 400 steps at a
    share of 0.5 did not teach it those slabs: models/default.md, "Round 11".)
    autoencoder, template: on surface_points' device, in the frame of surface_points (the
    dataset normalized as their model's was). Other arguments as make_training_batch.
    Returns a TrainingBatch with noisy_points [B, input_count, 3] (no gradient to the model).
    """
    if not 0.0 <= template_share <= 1.0 or (template_share and template is None):
        raise ValueError(f"template_share must be in [0, 1] and needs a template, got {template_share}")
    clean = make_training_batch(surface_points, surface_normals, input_count, 0.0, generator).noisy_points
    with torch.no_grad():
        encoding = autoencoder.encode(clean, sample=True, generator=generator)
        latent_points = encoding.latent_points
        if template_share:
            from_template = torch.rand(len(clean), generator=generator).to(clean.device) < template_share
            templated = template(encoding.shape_latent_mean)
            if templated.shape[1] != input_count:
                raise ValueError(f"the point template makes {templated.shape[1]} latent points: input_count must "
                                 f"match it, got {input_count}")
            latent_points = torch.where(from_template.view(-1, 1, 1), templated, latent_points)
            shape_latent = torch.where(from_template.view(-1, 1), encoding.shape_latent_mean, encoding.shape_latent)
        else:
            shape_latent = encoding.shape_latent
        decoded = autoencoder.decode(shape_latent, latent_points)
    return TrainingBatch(_jitter(decoded, surface_points, noise, generator), surface_points, surface_normals)


def _jitter(points, surface_points, noise, generator):
    """points [B, N, 3] plus Gaussian noise of `noise` times each shape's largest side."""
    side = (surface_points.amax(dim=1) - surface_points.amin(dim=1)).amax(dim=-1).view(-1, 1, 1)
    return points + torch.randn(points.shape, generator=generator).to(points.device) * (noise * side)


def to_unit_cube(batch):
    """Map each shape of a TrainingBatch into the solver's unit cube, framed by its noisy points
    (at inference only the raw points are known, so they must define the frame in training too).

    Returns (noisy_points [B, N, 3], surface_points [B, M, 3], surface_normals [B, M, 3]).
    """
    center, scale = fit_unit_cube(batch.noisy_points)
    noisy = (batch.noisy_points - center) * scale + 0.5
    surface = (batch.surface_points - center) * scale + 0.5
    return noisy, surface, batch.surface_normals


def indicator_loss(network, batch, resolution=DEFAULT_RESOLUTION, sigma=DEFAULT_SIGMA):
    """Mean squared difference between the network's Poisson indicator and the clean one, each
    divided by its root mean square over the grid.

    SAP compares the indicators as the solver scales them (-0.5 at the far corner). An untrained
    network's normals nearly cancel, the corner value is then near zero and that scaling blows
    the prediction up, which stalls training. Dividing by the RMS keeps what the mesh depends on
    (the zero level and which side is inside) and is bounded: the loss lies in [0, 4].
    network: PointsToOrientedPoints; batch: TrainingBatch on the network's device.
    Returns a scalar float32 tensor (differentiable in the network's parameters).
    """
    noisy, surface, surface_normals = to_unit_cube(batch)
    with torch.no_grad():
        target = _unit_rms(solve_indicator(surface, surface_normals, resolution, sigma))
    oriented_points, normals = network(noisy)
    return F.mse_loss(_unit_rms(solve_indicator(oriented_points, normals, resolution, sigma)), target)


def _unit_rms(grids):
    return grids / grids.square().mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)
