"""Area-weighted surface sampling and the normalizations."""
import json

import numpy as np
import pytest
import torch

from backend.data.normalization import GlobalNormalization, ShapeBoxNormalization, normalization_from_json
from backend.data.sampling import sample_surface, sample_surface_points


def _two_squares(big_side):
    """Two unit-normal squares in the z=0 plane: a 1x1 one and a big_side x big_side one, far apart."""
    small = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)
    big = np.array([[0, 0, 0], [big_side, 0, 0], [big_side, big_side, 0], [0, big_side, 0]], float) + [10, 0, 0]
    vertices = np.concatenate([small, big])
    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    return vertices, faces


def test_points_follow_area_not_triangle_count():
    vertices, faces = _two_squares(big_side=3.0)  # areas 1 and 9
    points = sample_surface_points(vertices, faces, 20000, seed=1)
    share_on_big = (points[:, 0] >= 10).mean()
    assert share_on_big == pytest.approx(0.9, abs=0.01)


def test_points_lie_inside_their_triangles_with_normals():
    vertices, faces = _two_squares(big_side=2.0)
    samples = sample_surface(vertices, faces, 5000, seed=3)
    assert samples.points.shape == (5000, 3) and samples.points.dtype == np.float32
    assert np.allclose(samples.points[:, 2], 0)
    on_small = samples.points[:, 0] < 5
    assert (samples.points[on_small, :2] >= 0).all() and (samples.points[on_small, :2] <= 1 + 1e-6).all()
    assert np.allclose(samples.normals, [0, 0, 1])
    # a point drawn from triangle [0,1,2] (below the diagonal x=y) never lands above it
    first = samples.face_index == 0
    assert (samples.points[first, 0] >= samples.points[first, 1] - 1e-6).all()


def test_uniform_density_inside_one_triangle():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], float)
    points = sample_surface_points(vertices, [[0, 1, 2]], 40000, seed=0)
    # the half-area sub-triangle near the right-angle corner x+y < 1/sqrt(2) holds half the points
    assert (points[:, 0] + points[:, 1] < 1 / np.sqrt(2)).mean() == pytest.approx(0.5, abs=0.01)


def test_seeded_and_deterministic():
    vertices, faces = _two_squares(1.0)
    a = sample_surface_points(vertices, faces, 100, seed=7)
    b = sample_surface_points(vertices, faces, 100, seed=7)
    c = sample_surface_points(vertices, faces, 100, seed=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_zero_area_triangles_are_never_chosen():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 2, 2]], float)
    faces = np.array([[3, 3, 3], [0, 1, 2], [0, 1, 1]])
    samples = sample_surface(vertices, faces, 2000, seed=0)
    assert (samples.face_index == 1).all()
    assert np.isfinite(samples.normals).all()


@pytest.mark.parametrize(
    "vertices, faces, message",
    [
        (np.zeros((3, 3)), np.zeros((0, 3), int), "no faces"),
        (np.zeros((3, 3)), [], "no faces"),
        (np.zeros((3, 3)), [[0, 1, 2]], "no surface area"),
        ([[0, 0, 0], [1, 0, 0], [2, 0, 0]], [[0, 1, 2]], "no surface area"),
        ([[0, 0, 0], [1, 0, np.nan], [0, 1, 0]], [[0, 1, 2]], "NaN or infinite"),
        ([[0, 0, 0], [1, 0, np.inf], [0, 1, 0]], [[0, 1, 2]], "NaN or infinite"),
        ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 3]], "only 3 vertices"),
        ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2, 0]], "triangles"),
        ([[0, 0], [1, 0], [0, 1]], [[0, 1, 2]], r"vertices must have shape"),
        (np.zeros((0, 3)), [[0, 1, 2]], "no vertices"),
    ],
)
def test_degenerate_meshes_raise_readable_errors(vertices, faces, message):
    with pytest.raises(ValueError, match=message):
        sample_surface(vertices, faces, 10)


def test_count_must_be_positive():
    vertices, faces = _two_squares(1.0)
    with pytest.raises(ValueError, match="count"):
        sample_surface(vertices, faces, 0)


def test_global_normalization_matches_whole_set_statistics_and_round_trips():
    rng = np.random.default_rng(0)
    shapes = rng.normal(loc=[1.0, -2.0, 0.5], scale=[1.0, 2.0, 3.0], size=(5, 300, 3))
    norm = GlobalNormalization.fit(iter(shapes))
    assert np.allclose(norm.mean, shapes.reshape(-1, 3).mean(axis=0))
    assert np.allclose(norm.std, shapes.reshape(-1).std())
    per_axis = GlobalNormalization.fit(shapes, per_axis_std=True)
    assert np.allclose(per_axis.std, shapes.reshape(-1, 3).std(axis=0))

    restored = normalization_from_json(json.loads(json.dumps(norm.to_json())))
    normalized = restored.normalize(shapes.astype(np.float32))
    assert normalized.dtype == np.float32
    assert np.allclose(restored.denormalize(normalized), shapes, atol=1e-5)
    as_tensor = torch.from_numpy(shapes.astype(np.float32))
    assert torch.allclose(restored.denormalize(restored.normalize(as_tensor)), as_tensor, atol=1e-5)


def test_shape_box_normalization_fills_the_box_and_round_trips():
    rng = np.random.default_rng(1)
    shapes = rng.uniform(-1, 1, size=(4, 200, 3)) * [3.0, 1.0, 0.5] + rng.normal(size=(4, 1, 3))
    norm = normalization_from_json(json.loads(json.dumps(ShapeBoxNormalization().to_json())))
    center, scale = norm.statistics(shapes)
    assert center.shape == (4, 1, 3) and scale.shape == (4, 1, 1)
    normalized = norm.normalize(shapes)
    assert np.allclose(np.abs(normalized).max(axis=(1, 2)), 1.0)
    assert np.allclose(normalized.max(axis=1)[:, 0], 1.0) and np.allclose(normalized.min(axis=1)[:, 0], -1.0)
    assert np.allclose(norm.denormalize(normalized, center, scale), shapes)
    tensor = torch.from_numpy(shapes)
    t_center, t_scale = norm.statistics(tensor)
    assert torch.allclose(norm.denormalize(norm.normalize(tensor), t_center, t_scale), tensor)
    with pytest.raises(ValueError, match="center and scale are required"):
        norm.denormalize(normalized)


def test_normalization_rejects_bad_input():
    with pytest.raises(ValueError, match="zero extent"):
        ShapeBoxNormalization().normalize(np.ones((1, 5, 3)))
    with pytest.raises(ValueError, match="std"):
        GlobalNormalization([0, 0, 0], [0.0])
    with pytest.raises(ValueError, match="kind"):
        normalization_from_json({"kind": "per_vertex"})
    with pytest.raises(ValueError, match="points must have shape"):
        ShapeBoxNormalization().normalize(np.ones((4, 2)))


def test_world_sampling_keeps_the_detail_of_a_mesh_far_from_the_origin():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float64)
    faces = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])
    far = np.array([1e8, 3e7, -5e7])
    near = sample_surface_points(vertices, faces, 500, seed=4, world=True)
    moved = sample_surface_points(vertices + far, faces, 500, seed=4, world=True)
    assert moved.dtype == np.float64
    np.testing.assert_allclose(moved - far, near, atol=1e-6)
    np.testing.assert_allclose(near, sample_surface_points(vertices, faces, 500, seed=4), atol=1e-6)


def reference_sample_surface(vertices, faces, count, seed):
    """The plain version: every triangle's corners at once (what sample_surface computes in slices)."""
    rng = np.random.default_rng(seed)
    corners = np.asarray(vertices, np.float64)[faces]
    edge_a, edge_b = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    cross = np.cross(edge_a, edge_b)
    areas = np.linalg.norm(cross, axis=1)
    cumulative = np.cumsum(areas)
    index = np.minimum(np.searchsorted(cumulative, rng.random(count) * cumulative[-1], side="right"),
                       np.flatnonzero(areas > 0)[-1])
    u, v = rng.random(count), rng.random(count)
    flip = u + v > 1.0
    u[flip], v[flip] = 1.0 - u[flip], 1.0 - v[flip]
    points = corners[index, 0] + u[:, None] * edge_a[index] + v[:, None] * edge_b[index]
    return points, cross[index] / areas[index, None], index


@pytest.mark.parametrize("seed", range(5))
def test_sampling_in_slices_matches_the_plain_version(seed, monkeypatch):
    import backend.data.sampling as sampling

    rng = np.random.default_rng(seed)
    vertices = rng.normal(size=(int(rng.integers(3, 40)), 3))
    faces = rng.integers(0, len(vertices), size=(int(rng.integers(1, 60)), 3)).astype(np.int32)
    faces[0] = [0, 1, 2]  # at least one triangle with area
    faces[-1] = [3 % len(vertices)] * 3  # and a degenerate one
    monkeypatch.setattr(sampling, "_AREA_CHUNK", int(rng.integers(1, 8)))  # awkward slice sizes
    points, normals, index = reference_sample_surface(vertices, faces, 300, seed)
    samples = sample_surface(vertices, faces, 300, seed)
    np.testing.assert_array_equal(samples.face_index, index)
    np.testing.assert_allclose(samples.points, points.astype(np.float32), rtol=0, atol=1e-6)
    np.testing.assert_allclose(samples.normals, normals.astype(np.float32), rtol=0, atol=1e-6)
