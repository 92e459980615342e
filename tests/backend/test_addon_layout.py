"""The add-on's Blender-free arithmetic (lion_blender/layout.py), in plain Python: frames,
layout, and what requests and results carry."""
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from lion_blender import layout


def test_the_package_and_its_layout_import_without_blender():
    probe = "import sys, lion_blender.layout; assert 'bpy' not in sys.modules and 'mathutils' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_an_upright_blender_object_is_upright_for_the_model():
    frame = layout.model_frame(np.eye(4))
    assert np.allclose(frame @ [0.0, 1.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0]), "model up is Blender up"
    assert np.allclose(frame @ [0.0, 0.0, 1.0, 1.0], [0.0, -1.0, 0.0, 1.0]), "model front is Blender front"
    assert np.isclose(np.linalg.det(frame[:3, :3]), 1.0), "a rotation: no mirroring"


def random_matrix(generator):
    q, _ = np.linalg.qr(generator.normal(size=(3, 3)))
    matrix = np.eye(4)
    matrix[:3, :3] = q @ np.diag(generator.uniform(0.2, 3.0, 3))
    matrix[:3, 3] = generator.normal(size=3) * 10
    return matrix


@pytest.mark.parametrize("seed", range(5))
def test_results_in_the_sources_frame_show_the_world_points_moved_by_the_offset(seed):
    generator = np.random.default_rng(seed)
    matrix = random_matrix(generator)
    if seed == 0:
        matrix[:3, 2] = 0.0  # flattened along one axis: the frame falls back to world axes
    world = generator.normal(size=(50, 3))
    source = layout.Source("chair", matrix, world)
    assert source.width == pytest.approx(np.ptp(world[:, 0]))
    offset = np.array([3.0, -1.0, 0.5])
    shown = layout.transform(source.to_local(world), source.result_matrix(offset))
    assert np.allclose(shown, world + offset, atol=1e-4)


def test_results_are_laid_out_side_by_side_without_overlap():
    offsets = layout.layout_offsets(2.0, 3)
    assert [o[0] for o in offsets] == pytest.approx([2.5, 5.0, 7.5])
    assert all(o[1] == o[2] == 0 for o in offsets)
    assert layout.layout_offsets(2.0, 2, start=0)[0][0] == 0.0
    assert layout.layout_offsets(0.0, 2)[1][0] > layout.layout_offsets(0.0, 2)[0][0], "a flat source still spreads them"


def test_point_radius_follows_the_spacing_of_the_points():
    dense, sparse = np.random.default_rng(0).uniform(size=(4096, 3)), np.random.default_rng(0).uniform(size=(64, 3))
    assert 0 < layout.point_radius(dense) < layout.point_radius(sparse)
    assert layout.point_radius(np.empty((0, 3))) > 0
    assert layout.point_radius(np.zeros((5, 3))) > 0


def test_requests_and_results_carry_what_was_used():
    settings = SimpleNamespace(seed=7, steps=25, output="Points", model="", similarity=0.7)
    assert layout.generation_params(settings) == {"seed": 7, "steps": 25, "output": "points"}
    assert layout.generation_params(SimpleNamespace(**{**vars(settings), "model": "mine"}))["model"] == "mine"
    vertices, matrix = np.zeros((4, 3), np.float32), np.eye(4)
    arrays = layout.shape_arrays(vertices, np.empty((0, 3), np.int32), matrix, "_a")
    assert sorted(arrays) == ["matrix_a", "vertices_a"] and np.allclose(arrays["matrix_a"], layout.model_frame(matrix))
    assert "faces" in layout.shape_arrays(vertices, np.zeros((2, 3), np.int32), matrix)
    # the backend's reply wins over the request: it says what it actually used
    header = {"seed": 9, "steps": 30, "model": "default", "tau": 280, "category": "chair"}
    assert layout.result_properties("variations", header, settings, source="Chair") == {
        "op": "variations", "seed": 9, "steps": 30, "model": "default", "tau": 280, "category": "chair",
        "source": "Chair"}
    assert layout.result_properties("sample", {}, settings) == {"op": "sample", "seed": 7, "steps": 25, "model": ""}


def test_reply_shapes_are_the_points_or_the_reconstructed_meshes():
    points = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    as_points = layout.reply_shapes({"output": "points"}, {"points": points})
    assert len(as_points) == 2 and all(faces is None for _, faces in as_points)
    assert np.array_equal(as_points[1][0], points[1])
    meshes = {"points": points, **{f"mesh_vertices_{k}": points[k] * 2 for k in range(2)},
              **{f"mesh_faces_{k}": np.array([[0, 1, 2]], np.int32) for k in range(2)}}
    as_meshes = layout.reply_shapes({"output": "mesh"}, meshes)
    assert np.array_equal(as_meshes[0][0], points[0] * 2) and as_meshes[1][1].shape == (1, 3)


@pytest.mark.parametrize("header, arrays, message", [
    ({"output": "points"}, {}, "no points"),
    ({"output": "points"}, {"points": np.zeros((5, 3), np.float32)}, "no points"),
    ({"output": "mesh"}, {"points": np.zeros((2, 5, 3), np.float32), "mesh_vertices_0": np.zeros((3, 3)),
                          "mesh_faces_0": np.zeros((1, 3), np.int32)}, "no mesh_vertices_1, mesh_faces_1"),
])
def test_an_incomplete_reply_is_named(header, arrays, message):
    with pytest.raises(ValueError, match=message):
        layout.reply_shapes(header, arrays)
