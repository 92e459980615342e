"""Points in, watertight mesh out: the function the server's `reconstruct` op and the CLI call."""
import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree

from backend.sap.frame import UnitCubeFrame, validate_points
from backend.sap.level import local_level
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
    compare_with_estimated=True,
    follow_points=True,
):
    """Reconstruct a watertight mesh from a point cloud, in the point cloud's frame.

    points: array-like [N, 3] (any real dtype, any position and scale), N >= 10, finite, not all
    identical; beyond MAX_POINTS, a random MAX_POINTS of them are used. network: a
    backend.sap.network.PointsToOrientedPoints (run on its own device) or None for estimated
    normals alone. With a network and `compare_with_estimated`, the estimated normals make a
    second mesh and the one closer to the points (symmetric Chamfer, `fit_to_points`) is
    returned: on generated clouds whose thin parts spread into slabs the network can lose a
    chair's seat and back, which the estimated normals keep (models/default.md, "Round 11").
    follow_points: cut each indicator at a level that follows its values at the nearby points
    (backend.sap.level), which keeps thin parts such as chair legs whole, rather than at 0.
    resolution: Poisson grid, power of two 32..256. sigma: Gaussian smoothing of the solver (> 0,
    SAP's units). neighbours: k of the normal estimation (>= 3; capped at N - 1). device: where
    the solver runs (a torch device or its name); None means the network's device, or the CPU.
    Returns a trimesh.Trimesh: float64 vertices [V, 3], int64 faces [F, 3], closed, faces
    counter-clockwise seen from outside; its metadata["normals"] says which oriented points made
    it, "network" or "estimated". Raises ValueError for bad input.
    """
    points = subsample(validate_points(points))
    check_resolution(resolution)
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    frame = UnitCubeFrame.fit(points)
    unit_points = frame.to_unit(points)
    sources = {}
    input_points = torch.from_numpy(unit_points).float()[None]
    with torch.no_grad():
        if network is not None:
            network_device = next(network.parameters()).device
            sources["network"] = network(input_points.to(network_device))
            device = network_device if device is None else device
        if network is None or compare_with_estimated:
            normals = estimate_oriented_normals(unit_points, min(neighbours, len(points) - 1))
            sources["estimated"] = (input_points, torch.from_numpy(normals).float()[None])
        device = torch.device("cpu" if device is None else device)
        level_points = input_points.to(device)
        meshes, errors = [], []
        for name, (oriented_points, normals) in sources.items():
            indicator = outside_negative(solve_indicator(oriented_points.to(device), normals.to(device), resolution, sigma))
            grid = indicator[0].cpu().numpy()
            if follow_points:
                grid = grid - local_level(indicator, level_points)
            try:
                meshes.append(indicator_to_mesh(grid, frame))
                meshes[-1].metadata["normals"] = name
            except ValueError as error:  # this source's field has no inside; another may
                errors.append(error)
    if not meshes:
        raise errors[0]
    if len(meshes) == 1:  # nothing to choose between: no need to measure the fit
        return meshes[0]
    return min(meshes, key=lambda mesh: fit_to_points(mesh, points))


def outside_negative(indicator):
    """Indicator grids [B, r, r, r] with the sign that makes the domain's boundary outside.

    The boundary lies in the empty margin around every shape, so it must read outside
    (negative). Inward normals (an estimate oriented the wrong way as a whole) give the
    negated field, whose mesh would be the domain's box with the shape carved out.
    """
    boundary = torch.cat([indicator[:, [0, -1]].flatten(1), indicator[:, :, [0, -1]].flatten(1),
                          indicator[:, :, :, [0, -1]].flatten(1)], dim=1)
    sign = torch.where(boundary.mean(dim=1) > 0, -1.0, 1.0).to(indicator.dtype)
    return indicator * sign.view(-1, 1, 1, 1)


FIT_SAMPLES = 20_000


def fit_to_points(mesh, points):
    """Symmetric Chamfer distance between a mesh and the points it was made from: the mean
    distance from the points to FIT_SAMPLES surface samples and back, halved (float, the
    points' units). A mesh that lost a part is far from that part's points; a mesh with
    surface where no points are is far from them."""
    surface = np.asarray(trimesh.sample.sample_surface(mesh, FIT_SAMPLES, seed=0)[0])
    to_mesh = cKDTree(surface).query(points)[0].mean()
    to_points = cKDTree(points).query(surface)[0].mean()
    return float(to_mesh + to_points) / 2.0
