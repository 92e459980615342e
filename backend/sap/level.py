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

from backend.sap.poisson import sample, splat

# Spread of a point's influence on the level, in grid cells (standard deviation of a Gaussian).
DEFAULT_SPREAD = 3.0
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
    point's Gaussian weight at node x (trilinear splat, then a blur of `spread` cells) and c a
    small constant that fades the level to 0 where points are few, the level at x is
        -softness · log((Σ_i K_i(x) exp(-v_i / softness) + c) / (Σ_i K_i(x) + c)),
    a soft minimum of the nearby v_i. spread, softness: > 0.
    """
    if not spread > 0 or not softness > 0:
        raise ValueError(f"spread and softness must be positive, got {spread} and {softness}")
    resolution = indicator.shape[-1]
    points = points.to(torch.float64)
    values = sample(indicator.to(torch.float64), points).clamp(min=lowest)
    weighted = splat(points, torch.stack([torch.exp(-values / softness), torch.ones_like(values)], dim=-1), resolution)
    exp_sum, weight = (ndimage.gaussian_filter(grid, spread, mode="wrap") for grid in weighted[0].cpu().numpy())
    # Sampled at its own points (trilinear splat, then blur), the weight is this on average:
    # the fade constant scales with it, so that it means the same at every point count and grid.
    typical = float(sample(torch.from_numpy(weight)[None], points.cpu()).mean())
    fade = FADE_WEIGHT * typical
    return (-softness * np.log((exp_sum + fade) / (weight + fade))).astype(np.float32)
