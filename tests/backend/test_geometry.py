"""Mapping artists' geometry into the model's space and back."""
import numpy as np
import pytest

from backend.geometry import GeometryError, ShapeFrame, shape_points, validate_vertices


def rotation(angle):
    c, s = np.cos(angle), np.sin(angle)
    matrix = np.eye(4)
    matrix[:2, :2] = [[c, -s], [s, c]]
    return matrix


def test_frame_maps_the_bounding_box_onto_the_model_extent_and_back():
    rng = np.random.default_rng(0)
    points = rng.uniform([-1, 2, 3], [5, 4, 4], size=(500, 3))
    frame = ShapeFrame.fit(points, model_half_extent=0.8)
    model_points = frame.to_model(points)
    assert np.abs(model_points).max() == pytest.approx(0.8, abs=1e-5)
    np.testing.assert_allclose(model_points.max(0) + model_points.min(0), 0, atol=1e-5)
    np.testing.assert_allclose(frame.to_world(model_points), points, atol=1e-5)


def test_frame_with_a_matrix_undoes_the_objects_rotation():
    rng = np.random.default_rng(1)
    local = rng.uniform(-1, 1, size=(300, 3)) * [2, 1, 0.5]
    matrix = rotation(1.1)
    matrix[:3, 3] = [3, -2, 7]
    world = local @ matrix[:3, :3].T + matrix[:3, 3]
    rotated = ShapeFrame.fit(world, 1.0, matrix).to_model(world)
    unrotated = ShapeFrame.fit(local, 1.0).to_model(local)
    np.testing.assert_allclose(rotated, unrotated, atol=1e-5)


def test_blend_moves_from_one_placement_to_the_other():
    a = ShapeFrame(np.zeros(3), 1.0, 1.0)
    b = ShapeFrame(np.array([4.0, 0, 0]), 2.0, 1.0)
    probe = np.array([[1.0, 0, 0]])
    np.testing.assert_allclose(a.blend(b, 0.0).to_world(probe), a.to_world(probe), atol=1e-6)
    np.testing.assert_allclose(a.blend(b, 1.0).to_world(probe), b.to_world(probe), atol=1e-6)
    np.testing.assert_allclose(a.blend(b, 0.5).to_world(probe), [[3.5, 0, 0]], atol=1e-6)


@pytest.mark.parametrize("vertices, message", [
    (np.zeros((0, 3)), "empty"),
    (np.array([[0, 0, np.inf]]), "infinite"),
    (np.zeros((4, 2)), "shape"),
    (np.array([["a", "b", "c"]]), "numbers"),
])
def test_bad_vertices_are_refused_with_a_reason(vertices, message):
    with pytest.raises(GeometryError, match=message):
        validate_vertices(vertices)


def test_a_shape_without_size_is_refused():
    with pytest.raises(GeometryError, match="no size"):
        ShapeFrame.fit(np.ones((10, 3)), 1.0)


def test_singular_matrix_is_refused():
    with pytest.raises(GeometryError, match="singular"):
        ShapeFrame.fit(np.random.default_rng(0).random((10, 3)), 1.0, np.diag([1.0, 0.0, 1.0, 1.0]))


def test_shape_points_sample_surfaces_or_resample_point_clouds():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    on_triangle = shape_points(vertices, np.array([[0, 1, 2]]), count=100, seed=0)
    assert on_triangle.shape == (100, 3) and np.allclose(on_triangle[:, 2], 0)
    assert (on_triangle[:, 0] + on_triangle[:, 1] <= 1 + 1e-6).all()
    cloud = shape_points(np.random.default_rng(0).random((10, 3)), None, count=50, seed=0)
    assert cloud.shape == (50, 3)
    np.testing.assert_array_equal(shape_points(vertices, np.array([[0, 1, 2]]), 100, seed=0), on_triangle)


@pytest.mark.parametrize("vertices", [
    np.array([[0, 0, 0], [1, 0, 0]]),  # a 2-vertex edge
    np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 3, 3.0]]),  # points on one line
])
def test_points_that_lie_on_one_line_are_no_shape(vertices):
    with pytest.raises(GeometryError, match="one line"):
        shape_points(vertices, None, count=64, seed=0)
