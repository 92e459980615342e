"""Points in, watertight mesh out: the function the server's `reconstruct` op and the CLI call."""
import numpy as np
import torch

from backend.sap.frame import UnitCubeFrame, validate_points
from backend.sap.mesh import indicator_to_mesh
from backend.sap.normals import DEFAULT_NEIGHBOURS, estimate_oriented_normals
from backend.sap.poisson import DEFAULT_RESOLUTION, DEFAULT_SIGMA, check_resolution, solve_indicator

# The most points a reconstruction uses. More add nothing a grid of at most 256 cells a side
# can show, but cost memory in the network and the normal estimation (1 million points took
# 3 GB): a larger cloud is reduced to this many, chosen at random with a fixed seed.
MAX_POINTS = 100_000


def subsample(points, count=None):
    """`points` [N, 3] itself when N <= count (default MAX_POINTS), else `count` of them (the same
    ones every time)."""
    count = MAX_POINTS if count is None else count
    if len(points) <= count:
        return points
    chosen = np.random.default_rng(0).choice(len(points), count, replace=False)
    return points[np.sort(chosen)]


def reconstruct(
    points,
    network=None,
    resolution=DEFAULT_RESOLUTION,
    sigma=DEFAULT_SIGMA,
    neighbours=DEFAULT_NEIGHBOURS,
    device=None,
):
    """Reconstruct a watertight mesh from a point cloud, in the point cloud's frame.

    points: array-like [N, 3] (any real dtype, any position and scale), N >= 10, finite, not all
    identical; beyond MAX_POINTS, a random MAX_POINTS of them are used. network: a backend.sap.network.PointsToOrientedPoints (run on its own device) or
    None for the fallback with estimated normals. resolution: Poisson grid, power of two 32..256.
    sigma: Gaussian smoothing of the solver (> 0, SAP's units). neighbours: k of the normal
    estimation in the fallback (>= 3; capped at N - 1). device: where the solver runs (a torch
    device or its name); None means the network's device, or the CPU without a network.
    Returns a trimesh.Trimesh: float64 vertices [V, 3], int64 faces [F, 3], closed, faces
    counter-clockwise seen from outside. Raises ValueError for bad input.
    """
    points = subsample(validate_points(points))
    check_resolution(resolution)
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    frame = UnitCubeFrame.fit(points)
    unit_points = frame.to_unit(points)
    with torch.no_grad():
        if network is None:
            normals = estimate_oriented_normals(unit_points, min(neighbours, len(points) - 1))
            oriented_points, normals = (torch.from_numpy(a).float()[None] for a in (unit_points, normals))
        else:
            network_device = next(network.parameters()).device
            oriented_points, normals = network(torch.from_numpy(unit_points).float().to(network_device)[None])
            device = network_device if device is None else device
        device = torch.device("cpu" if device is None else device)
        indicator = solve_indicator(oriented_points.to(device), normals.to(device), resolution, sigma)
    return indicator_to_mesh(indicator[0].cpu().numpy(), frame)
