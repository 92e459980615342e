"""A surface level that varies over the grid, so that thin parts survive marching cubes.

The Poisson indicator of a thick part reaches its plateau inside; that of a part only two or
three points wide (a chair leg or a lamp's stem in a generated cloud of 2048 points) never
does, so its points read well below the level of 0 that the solver's shift makes right on
average. Cut at 0, such a leg comes out as a few fragments or not at all. Cut instead at a
level that follows the indicator's values at the nearby points, the surface passes through
the points everywhere. The level is a soft minimum of those values rather than their mean:
where a leg meets the seat, the mean would side with the seat's many points and cut the leg
off; the soft minimum keeps the joint. Far from every point the level returns to 0.
"""
import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F

from backend.sap.poisson import sample, splat

# Spread of a point's influence on the level, in unit-cube lengths (standard deviation of a
# Gaussian): 3 cells of a grid of 128, about the spacing of 2048 points on a shape.
DEFAULT_SPREAD = 3.0 / 128
# The level is smooth on this scale, so finer grids take it from a grid of this resolution,
# upsampled: at 256 a full-size level cost 2.3 s, more than the rest of the reconstruction.
LEVEL_RESOLUTION = 128
# Points whose indicator reads below this are treated as strays (noise off the surface): the
# level is not lowered further to take them in. The fully outside value is -0.5.
LOWEST_LEVEL = -0.3
# Temperature of the soft minimum, in indicator units (the indicator spans -0.5..0.5): values
# this far above the lowest nearby one count e times less.
SOFTNESS = 0.2
# The weight, relative to the mean weight at the points, below which the level fades to 0.
FADE_WEIGHT = 0.05


def local_level(indicator, points, spread=DEFAULT_SPREAD, lowest=LOWEST_LEVEL, softness=SOFTNESS):
    """The level grid [r, r, r] (float32 numpy) at which to cut one indicator.

    indicator: float [1, r, r, r] (torch, as solve_indicator returns it, outside negative);
    points: float [1, N, 3] (torch, same device) in the unit cube, the points the surface should
    pass through. With v_i the indicator at point i (clamped to at least `lowest`), K_i(x) the
    point's Gaussian weight at node x (trilinear splat, then a blur of `spread` unit-cube
    lengths) and c a small constant that fades the level to 0 where points are few, the level
    at x is
        -softness · log((Σ_i K_i(x) exp(-v_i / softness) + c) / (Σ_i K_i(x) + c)),
    a soft minimum of the nearby v_i. spread, softness: > 0. Grids finer than LEVEL_RESOLUTION
    get the level computed at LEVEL_RESOLUTION and upsampled trilinearly.
    """
    if not spread > 0 or not softness > 0:
        raise ValueError(f"spread and softness must be positive, got {spread} and {softness}")
    resolution = indicator.shape[-1]
    coarse = min(resolution, LEVEL_RESOLUTION)
    values = sample(indicator, points.to(indicator.dtype)).to(torch.float64).clamp(min=lowest)
    points = points.to(torch.float64)
    weighted = splat(points, torch.stack([torch.exp(-values / softness), torch.ones_like(values)], dim=-1), coarse)
    exp_sum, weight = (ndimage.gaussian_filter(grid, spread * coarse, mode="wrap") for grid in weighted[0].cpu().numpy())
    # Sampled at its own points (trilinear splat, then blur), the weight is this on average:
    # the fade constant scales with it, so that it means the same at every point count and grid.
    typical = float(sample(torch.from_numpy(weight)[None], points.cpu()).mean())
    fade = FADE_WEIGHT * typical
    level = (-softness * np.log((exp_sum + fade) / (weight + fade))).astype(np.float32)
    return level if coarse == resolution else upsample_periodic(level, resolution // coarse)


def upsample_periodic(grid, factor):
    """A periodic grid [n, n, n] (numpy, node i at i/n) trilinearly interpolated at the nodes of
    a grid [n·factor]^3 (node j at j/(n·factor)); float32 numpy."""
    size = grid.shape[0]
    padded = F.pad(torch.from_numpy(np.asarray(grid, np.float32))[None, None], (0, 1) * 3, mode="circular")
    fine = F.interpolate(padded, size=(size * factor + 1,) * 3, mode="trilinear", align_corners=True)
    return fine[0, 0, :-1, :-1, :-1].numpy()
