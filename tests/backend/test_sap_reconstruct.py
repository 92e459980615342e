"""Points -> mesh on real meshes nobody here made (pymeshlab's sample meshes), frames, bad input."""
import importlib.util
import os
import time

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree

from backend.sap.network import NetworkConfig, PointsToOrientedPoints
from backend.sap.frame import UnitCubeFrame
from backend.sap.level import local_level, upsample_periodic
from backend.sap.mesh import indicator_to_mesh
from backend.sap.poisson import sample, solve_indicator
from backend.sap.reconstruct import fit_to_points, outside_negative, reconstruct


def _sample_mesh_folder():
    spec = importlib.util.find_spec("pymeshlab")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = os.path.join(spec.submodule_search_locations[0], "tests", "sample_meshes")
    return folder if os.path.isdir(folder) else None


SAMPLE_MESHES = _sample_mesh_folder()
needs_sample_meshes = pytest.mark.skipif(
    SAMPLE_MESHES is None, reason="pymeshlab (pip install pymeshlab==2025.7.post1) ships the sample meshes"
)

# Symmetric Chamfer-L1 (mean of both directions' mean distance) over the bounding-box diagonal.
CHAMFER_LIMIT = {2048: 0.006, 10000: 0.004}


def chamfer_over_diagonal(mesh, reference, count=30000):
    ours = trimesh.sample.sample_surface(mesh, count, seed=1)[0]
    theirs = trimesh.sample.sample_surface(reference, count, seed=2)[0]
    distance = (cKDTree(theirs).query(ours)[0].mean() + cKDTree(ours).query(theirs)[0].mean()) / 2
    return distance / np.linalg.norm(reference.extents)


@needs_sample_meshes
@pytest.mark.parametrize("count", [2048, 10000])
@pytest.mark.parametrize("name", ["bunny", "airplane", "cow"])
def test_real_meshes_come_back_watertight_outward_and_close(name, count):
    reference = trimesh.load(os.path.join(SAMPLE_MESHES, f"{name}.obj"), force="mesh")
    points = trimesh.sample.sample_surface(reference, count, seed=0)[0]
    start = time.perf_counter()
    mesh = reconstruct(points)
    seconds = time.perf_counter() - start
    chamfer = chamfer_over_diagonal(mesh, reference)
    print(f"{name} {count} points: Chamfer-L1/diagonal {chamfer:.5f}, {seconds:.2f} s, {len(mesh.faces)} faces")
    assert mesh.is_watertight
    assert mesh.is_winding_consistent
    assert mesh.volume > 0
    assert mesh.volume == pytest.approx(reference.volume, rel=0.05)
    assert chamfer < CHAMFER_LIMIT[count]


@needs_sample_meshes
@pytest.mark.parametrize("name", ["bunny", "airplane"])
def test_noisy_points_still_give_a_close_watertight_mesh(name):
    reference = trimesh.load(os.path.join(SAMPLE_MESHES, f"{name}.obj"), force="mesh")
    points = trimesh.sample.sample_surface(reference, 2048, seed=0)[0]
    noise = np.random.default_rng(5).normal(size=points.shape) * 0.005 * reference.extents.max()
    mesh = reconstruct(points + noise)
    chamfer = chamfer_over_diagonal(mesh, reference)
    print(f"{name} 2048 points, noise 0.5% of the size: Chamfer-L1/diagonal {chamfer:.5f}")
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    assert chamfer < 0.006


def test_any_position_and_scale_comes_back_in_the_input_frame():
    sphere = trimesh.creation.icosphere(subdivisions=4)
    points = trimesh.sample.sample_surface(sphere, 3000, seed=0)[0]
    offset, scale = np.array([1000.0, -250.0, 40.0]), 1e-3
    mesh = reconstruct(points * scale + offset, resolution=64)
    radii = np.linalg.norm(mesh.vertices - offset, axis=1) / scale
    assert abs(radii.mean() - 1.0) < 2.0 / 64 / 0.8  # within two grid cells
    assert mesh.is_watertight and mesh.volume > 0


def test_a_network_supplies_the_oriented_points():
    torch.manual_seed(0)
    network = PointsToOrientedPoints(NetworkConfig(feature_grid=16, channels=16, unet_levels=2)).eval()
    points = trimesh.sample.sample_surface(trimesh.creation.icosphere(subdivisions=3), 500, seed=0)[0]
    mesh = reconstruct(points, network, resolution=32, compare_with_estimated=False)
    frame = UnitCubeFrame.fit(points)
    unit_points = torch.from_numpy(frame.to_unit(points)).float()[None]
    with torch.no_grad():
        oriented_points, normals = network(unit_points)
        indicator = outside_negative(solve_indicator(oriented_points, normals, 32))
        expected = indicator_to_mesh(indicator[0].numpy() - local_level(indicator, unit_points), frame)
    np.testing.assert_allclose(mesh.vertices, expected.vertices)
    assert mesh.is_watertight


def test_the_mesh_closer_to_the_points_wins_over_an_untrained_network():
    # An untrained network's normals nearly cancel; the estimated normals' mesh fits the points.
    torch.manual_seed(0)
    network = PointsToOrientedPoints(NetworkConfig(feature_grid=16, channels=16, unet_levels=2)).eval()
    points = trimesh.sample.sample_surface(trimesh.creation.icosphere(subdivisions=3), 500, seed=0)[0]
    picked = reconstruct(points, network, resolution=32)
    np.testing.assert_allclose(picked.vertices, reconstruct(points, None, resolution=32).vertices)
    alone = reconstruct(points, network, resolution=32, compare_with_estimated=False)
    assert fit_to_points(picked, points) < fit_to_points(alone, points)
    assert (picked.metadata["normals"], alone.metadata["normals"]) == ("estimated", "network")


def test_fit_to_points_is_the_symmetric_chamfer_distance():
    sphere = trimesh.creation.icosphere(subdivisions=4)
    points = trimesh.sample.sample_surface(sphere, 3000, seed=0)[0]
    assert fit_to_points(sphere, points) < 0.03  # the spacing of 3000 points on a unit sphere
    # A sphere of half the radius is 0.5 from every point (both ways), up to the facets.
    assert fit_to_points(sphere.copy().apply_scale(0.5), points) == pytest.approx(0.5, abs=0.01)
    # Half of the sphere: the other half's points are far from it, its own are not.
    half = sphere.submesh([np.flatnonzero(sphere.triangles_center[:, 2] > 0)], append=True)
    assert fit_to_points(half, points) > 4 * fit_to_points(sphere, points)


def test_inward_normals_give_the_same_indicator_as_outward_ones():
    points = torch.from_numpy(_sphere_points(2000)).float()[None] * 0.3 + 0.5
    outward = (points - 0.5) / (points - 0.5).norm(dim=-1, keepdim=True)
    expected = solve_indicator(points, outward, 32)
    assert (expected[0, 0] < 0).all()  # the boundary is outside
    torch.testing.assert_close(outside_negative(solve_indicator(points, -outward, 32)), expected)
    torch.testing.assert_close(outside_negative(expected), expected)


def _sphere_points(count=100):
    return trimesh.sample.sample_surface(trimesh.creation.icosphere(subdivisions=2), count, seed=0)[0]


@pytest.mark.parametrize(
    "points, message",
    [
        (np.zeros((9, 3)), "at least 10"),
        (np.ones((50, 3)), "all the same point"),
        (np.where(np.arange(300).reshape(100, 3) == 7, np.nan, _sphere_points()), "NaN or infinite"),
        (np.where(np.arange(300).reshape(100, 3) == 7, np.inf, _sphere_points()), "NaN or infinite"),
        (np.zeros((100, 2)), r"shape \[N, 3\]"),
        ([["a", "b", "c"]] * 20, "numeric"),
    ],
)
def test_bad_points_are_refused_with_a_clear_error(points, message):
    with pytest.raises(ValueError, match=message):
        reconstruct(points)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="resolution"):
        reconstruct(_sphere_points(), resolution=100)
    with pytest.raises(ValueError, match="sigma"):
        reconstruct(_sphere_points(), sigma=-1.0)
    with pytest.raises(ValueError, match="neighbours"):
        reconstruct(_sphere_points(), neighbours=2)


def test_mesh_extraction_refuses_a_grid_without_inside():
    with pytest.raises(ValueError, match="no inside"):
        indicator_to_mesh(np.full((32, 32, 32), -0.5, dtype=np.float32), UnitCubeFrame(np.zeros(3), 1.0))


@pytest.mark.cuda
def test_the_solver_runs_on_cuda_with_the_same_mesh():
    points = trimesh.sample.sample_surface(trimesh.creation.torus(1.0, 0.35), 2048, seed=0)[0]
    on_cpu = reconstruct(points, resolution=128)
    on_cuda = reconstruct(points, resolution=128, device="cuda")
    assert on_cuda.is_watertight and on_cuda.volume == pytest.approx(on_cpu.volume, rel=1e-3)


def test_a_cloud_over_the_point_budget_is_reconstructed_from_a_fixed_subset(monkeypatch):
    from backend.sap import reconstruct as module

    monkeypatch.setattr(module, "MAX_POINTS", 800)
    rng = np.random.default_rng(3)
    points = rng.standard_normal((5000, 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    subset = module.subsample(points)
    assert subset.shape == (800, 3) and np.array_equal(subset, module.subsample(points))
    assert np.array_equal(module.subsample(points[:800]), points[:800])
    whole, reduced = reconstruct(points, resolution=32), reconstruct(subset, resolution=32)
    np.testing.assert_array_equal(whole.vertices, reduced.vertices)
    np.testing.assert_array_equal(whole.faces, reduced.faces)


def _stool_points(count, leg_radius=0.01):
    """Points on a stool: a seat 0.12 thick on four legs `leg_radius` thick (y up, 1.06 tall)."""
    seat = trimesh.creation.box([1.0, 0.12, 1.0])
    seat.apply_translation([0.0, 0.5, 0.0])
    parts = [seat]
    for x, z in [(-0.4, -0.4), (0.4, -0.4), (-0.4, 0.4), (0.4, 0.4)]:
        leg = trimesh.creation.cylinder(radius=leg_radius, height=1.0, sections=16,
                                        transform=trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
        leg.apply_translation([x, 0.0, z])
        parts.append(leg)
    return trimesh.sample.sample_surface(trimesh.util.concatenate(parts), count, seed=0)[0]


def test_thin_legs_survive_when_the_level_follows_the_points():
    # Legs a few points wide read below the indicator's mean level: cut at 0 they break up.
    points = _stool_points(4096)
    leg_points = points[points[:, 1] < 0.2]

    def share_off_the_mesh(mesh):
        return float((cKDTree(mesh.sample(20000, seed=0)).query(leg_points)[0] > 0.03).mean())

    following = reconstruct(points)
    assert following.is_watertight and following.volume > 0
    assert share_off_the_mesh(following) < 0.05
    assert share_off_the_mesh(reconstruct(points, follow_points=False)) > 0.2


def _discrete_gaussian(spread, size):
    """The periodic 1D kernel [size, size] of scipy.ndimage.gaussian_filter (truncate 4, mode wrap)."""
    radius = int(4.0 * spread + 0.5)
    offsets = np.arange(-radius, radius + 1)
    taps = np.exp(-0.5 * (offsets / spread) ** 2)
    kernel = np.zeros((size, size))
    for node in range(size):
        for offset, tap in zip(offsets, taps / taps.sum()):
            kernel[node, (node + offset) % size] += tap
    return kernel


def test_local_level_matches_a_point_by_point_twin():
    rng = np.random.default_rng(3)
    size, spread, lowest, softness = 16, 1.5, -0.3, 0.1
    points = rng.uniform(0.2, 0.8, size=(25, 3))
    points[0] = [0.25, 0.5, 0.75]  # on grid nodes
    indicator = rng.uniform(-0.5, 0.5, size=(size, size, size))
    kernel = _discrete_gaussian(spread, size)

    def corners(point):  # the 8 grid nodes around a point and their trilinear weights
        base = np.floor(point * size).astype(int)
        fraction = point * size - base
        for offset in np.ndindex(2, 2, 2):
            weight = np.prod([f if o else 1.0 - f for f, o in zip(fraction, offset)])
            yield tuple((base + offset) % size), weight

    def blurred_splat(node):  # the Gaussian-blurred trilinear splat of one node onto the grid
        return np.einsum("i,j,k->ijk", kernel[node[0]], kernel[node[1]], kernel[node[2]])

    exp_sum, weight = np.zeros((size,) * 3), np.zeros((size,) * 3)
    for point in points:
        value = max(sum(w * indicator[node] for node, w in corners(point)), lowest)
        for node, w in corners(point):
            exp_sum += w * np.exp(-value / softness) * blurred_splat(node)
            weight += w * blurred_splat(node)
    fade = 0.05 * np.mean([sum(w * weight[node] for node, w in corners(point)) for point in points])
    expected = -softness * np.log((exp_sum + fade) / (weight + fade))
    level = local_level(torch.from_numpy(indicator)[None], torch.from_numpy(points)[None], spread / size, lowest,
                        softness)
    np.testing.assert_allclose(level, expected, rtol=1e-5, atol=1e-6)
    assert level.dtype == np.float32 and level.shape == (size,) * 3


def test_local_level_is_a_soft_minimum_of_the_values_nearby():
    points = torch.tensor([[[0.5, 0.5, 0.45], [0.5, 0.5, 0.55]]], dtype=torch.float64)
    indicator = torch.zeros(1, 32, 32, 32, dtype=torch.float64)
    indicator[..., :16] = 0.2  # the first point reads 0.2, the second -0.2
    indicator[..., 16:] = -0.2
    level = local_level(indicator, points, spread=2.0 / 32, softness=0.1)
    assert level[16, 16, 16] < -0.1  # midway: near the lower value, not at their mean of 0
    assert abs(level[0, 0, 0]) < 1e-3  # far from every point: the level of 0
    with pytest.raises(ValueError, match="positive"):
        local_level(indicator, points, softness=0.0)


def test_upsampling_the_level_is_trilinear_interpolation_on_the_periodic_grid():
    coarse = np.random.default_rng(4).standard_normal((8, 8, 8)).astype(np.float32)
    fine = upsample_periodic(coarse, 4)
    nodes = np.stack(np.meshgrid(*[np.arange(32) / 32] * 3, indexing="ij"), axis=-1).reshape(1, -1, 3)
    expected = sample(torch.from_numpy(coarse)[None], torch.from_numpy(nodes).float())[0].numpy()
    np.testing.assert_allclose(fine.reshape(-1), expected, atol=1e-5)


def test_a_fine_grid_takes_its_level_from_the_level_resolution():
    points = torch.from_numpy(_sphere_points(500) * 0.3 + 0.5).float()[None]
    coarse = solve_indicator(points, (points - 0.5) / (points - 0.5).norm(dim=-1, keepdim=True), 128)
    # an indicator at 256 that reads exactly as the one at 128 at any point
    fine = torch.from_numpy(upsample_periodic(coarse[0].numpy(), 2))[None]
    expected = upsample_periodic(local_level(coarse, points), 2)
    np.testing.assert_allclose(local_level(fine, points), expected, atol=1e-5)
