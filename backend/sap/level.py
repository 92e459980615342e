"""A surface level that varies over the grid, so that thin parts survive marching cubes.

The Poisson indicator of a thick part reaches its plateau inside; that of a part only two or
three points wide (a chair leg in a generated cloud of 2048 points) never does, so its points
read well below the level of 0 that the solver's shift makes right on average. Cut at 0, such
a leg comes out as a few fragments or not at all. Cut instead at a level that follows the
indicator's value at the nearby points, the surface passes through the points everywhere:
legs stay whole, and thick parts, whose points read slightly above 0, lose a sliver of the
bloat. Far from every point the level returns to 0.
"""
import numpy as np
import torch
from scipy import ndimage

from backend.sap.poisson import sample, splat

# Spread of a point's influence on the level, in grid cells (standard deviation of a Gaussian).
DEFAULT_SPREAD = 3.0
# Points whose indicator reads below this are treated as strays (noise off the surface): the
# level is not lowered further to take them in. The fully outside value is -0.5.
LOWEST_LEVEL = -0.3
# The weight, relative to the mean weight at the points, below which the level fades to 0.
FADE_WEIGHT = 0.05


def local_level(indicator, points, spread=DEFAULT_SPREAD, lowest=LOWEST_LEVEL):
    """The level grid [r, r, r] (float32 numpy) at which to cut one indicator.

    indicator: float [1, r, r, r] (torch, as solve_indicator returns it, outside negative);
    points: float [1, N, 3] (torch, same device) in the unit cube, the points the surface should
    pass through. The level at a node is the Gaussian-weighted mean of the indicator's values
    at the points around it (each clamped to at least `lowest`), faded to 0 where points are few.
    spread: the Gaussian's standard deviation in cells (> 0).
    """
    if not spread > 0:
        raise ValueError(f"spread must be positive, got {spread}")
    resolution = indicator.shape[-1]
    values = sample(indicator, points).clamp(min=lowest)
    weighted = splat(points, torch.stack([values, torch.ones_like(values)], dim=-1), resolution)
    value_sum, weight = (ndimage.gaussian_filter(grid, spread, mode="wrap")
                         for grid in weighted[0].to(torch.float64).cpu().numpy())
    # Sampled at its own points (trilinear splat, then blur), the weight is this on average:
    # the fade constant scales with it, so that it means the same at every point count and grid.
    typical = float(np.mean(_trilinear(weight, points[0].to(torch.float64).cpu().numpy())))
    return (value_sum / (weight + FADE_WEIGHT * typical)).astype(np.float32)


def _trilinear(grid, points):
    """Values of a periodic numpy grid [r, r, r] at unit-cube points [N, 3] (numpy [N])."""
    return sample(torch.from_numpy(grid)[None], torch.from_numpy(points)[None])[0].numpy()
