"""Every generation op through the real server process, with an untrained `tiny` model.

Untrained weights give meaningless shapes but real arrays: these tests check shapes, frames,
reproducibility, progress, cancel and errors, not quality.
"""
import os
import struct

import numpy as np
import pytest
import torch
import trimesh

from test_serve import ServerProcess

N = 2048


def box_mesh(center=(0.0, 0.0, 0.0), size=(1.0, 0.5, 0.7)):
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float32)
    vertices = corners * np.asarray(size, np.float32) / 2 + np.asarray(center, np.float32)
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]], np.int32)
    return vertices, faces


def assert_same_shapes(actual, expected, size):
    """Equal up to float error, allowing a handful of points to jump: a point that lies on a
    voxel border or a ball-query radius can switch sides under rounding."""
    error = np.linalg.norm(actual - expected, axis=-1)
    assert np.mean(error < 1e-3 * size) > 0.99, f"median error {np.median(error)}"
    assert error.max() < 0.02 * size, f"max error {error.max()}"


def rotation_matrix(angle, axis):
    c, s = np.cos(angle), np.sin(angle)
    i, j = [a for a in range(3) if a != axis]
    matrix = np.eye(4)
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = c, -s, s, c
    return matrix


LION_HEADER = '"format": "lion-blender-checkpoint", "format_version": "1"'
BROKEN_MODEL_FILES = {  # safetensors headers (JSON) of model files a careless copy or an attacker could leave
    "metadata-is-a-string": b'{"__metadata__": "a string"}',
    "metadata-is-a-list": b'{"__metadata__": ["a", "list"]}',
    "deeply-nested": b'{"__metadata__": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "lion-without-config": ('{"__metadata__": {' + LION_HEADER + '}}').encode(),
    "lion-with-a-bad-config": ('{"__metadata__": {' + LION_HEADER + ', "config": "[[1]]"}}').encode(),
    "lion-with-an-empty-config": ('{"__metadata__": {' + LION_HEADER + ', "config": "{}", "metadata": "[]"}}').encode(),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from backend.checkpoint import save_model
    from backend.config import get_config
    from backend.data.normalization import ShapeBoxNormalization
    from backend.models import LionModel
    from backend.sap.network import PointsToOrientedPoints, save_network

    models = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    save_model(str(models / "untrained.safetensors"), LionModel(get_config("tiny"), ShapeBoxNormalization()))
    save_network(PointsToOrientedPoints(), str(models / "untrained-sap.safetensors"))  # its SAP network
    # A second folder, searched after the first: a v-prediction model whose z0 prior knows categories.
    more = tmp_path_factory.mktemp("more_models")
    config = get_config("tiny")
    config.diffusion.prediction = "v"
    config.shape_prior.categories = ["chair", "table"]
    categorized = LionModel(config, ShapeBoxNormalization())
    torch.nn.init.normal_(categorized.shape_prior.category_embedding.weight)  # trained ones are not zero
    save_model(str(more / "categorized.safetensors"), categorized)
    for name, header in BROKEN_MODEL_FILES.items():  # each must be skipped, by name, leaving the rest usable
        (more / f"{name}.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    process = ServerProcess(tmp_path_factory.mktemp("work"), {"LION_MODEL_DIRS": f"{models}:{more}",
                                                              "OMP_NUM_THREADS": "1"})
    yield process
    process.close()


def run(server, request, arrays=None):
    """Send a request; return (progress events, final header, arrays)."""
    server.send(request, arrays)
    events = []
    while True:
        header, out = server.reply()
        if header["type"] != "progress":
            return events, header, out
        events.append(header)


def ok(server, request, arrays=None):
    events, header, out = run(server, request, arrays)
    assert header["type"] == "result", header
    return events, header, out


def test_hello_lists_the_models_in_search_order(server):
    _, header, _ = ok(server, {"id": 1, "op": "hello"})
    # LION_MODEL_DIRS first (so its model is the default for requests), then the bundled one.
    assert [m["name"] for m in header["models"]] == ["untrained", "categorized", "default"]
    categories = {m["name"]: m["categories"] for m in header["models"]}
    assert categories["untrained"] == [] and categories["categorized"] == ["chair", "table"]


def test_hello_names_the_unusable_model_files_it_skipped(server):
    _, header, _ = ok(server, {"id": 1, "op": "hello"})
    skipped = {os.path.basename(entry["path"]): entry["reason"] for entry in header["skipped_models"]}
    assert set(skipped) == {f"{name}.safetensors" for name in BROKEN_MODEL_FILES}
    assert "malformed metadata" in skipped["metadata-is-a-string.safetensors"]
    assert "without its config" in skipped["lion-without-config.safetensors"]
    _, header, _ = ok(server, {"id": 2, "op": "load_model", "model": "categorized"})
    _, header, _ = run(server, {"id": 3, "op": "load_model", "model": "metadata-is-a-list"})
    assert header["code"] == "bad_request" and "Unknown model" in header["message"]


def test_sample_by_category_with_guidance(server):
    request = {"op": "sample", "model": "categorized", "count": 2, "steps": 3, "seed": 2}
    _, header, chairs = ok(server, {**request, "id": 30, "category": "chair", "guidance": 3.0})
    assert header["category"] == "chair" and header["guidance"] == 3.0
    assert chairs["points"].shape == (2, N, 3) and np.isfinite(chairs["points"]).all()
    _, header, anything = ok(server, {**request, "id": 31})
    assert header["category"] == "any"
    assert np.abs(chairs["points"] - anything["points"]).mean() > 1e-3, "the category must reach the prior"
    _, header, _ = run(server, {**request, "id": 32, "category": "lamp"})
    assert header["code"] == "bad_request" and "any, chair, table" in header["message"]
    _, header, _ = run(server, {"op": "sample", "id": 33, "count": 1, "steps": 2, "category": "chair"})
    assert header["code"] == "bad_request" and "category must be one of any for model untrained" in header["message"]
    _, header, _ = run(server, {**request, "id": 34, "category": "chair", "guidance": -1})
    assert header["code"] == "bad_request" and "guidance" in header["message"]
    _, header, _ = ok(server, {"op": "load_model", "id": 35, "model": "categorized"})
    assert header["categories"] == ["chair", "table"] and header["num_steps"] == 1000


def test_sample_places_shapes_at_the_requested_center_and_size(server):
    events, header, out = ok(server, {"id": 2, "op": "sample", "count": 2, "steps": 3, "seed": 1,
                                      "center": [5.0, 0.0, -2.0], "size": 2.0})
    assert out["points"].shape == (2, N, 3) and out["points"].dtype == np.float64
    assert header["model"] == "untrained" and header["steps"] == 3
    assert events and events[-1]["step"] == events[-1]["total"]
    assert {e["stage"] for e in events} == {"shape latent", "latent points"}


def test_sample_in_a_frame_is_the_plain_sample_moved_into_it(server):
    request = {"op": "sample", "count": 1, "steps": 2, "seed": 4, "center": [1.0, 2.0, 3.0], "size": 0.5}
    _, _, plain = ok(server, {**request, "id": 20})
    turn = np.array([[1, 0, 0, 10], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], np.float64)  # Y-up to Z-up, moved
    _, _, framed = ok(server, {**request, "id": 21}, {"matrix": turn})
    expected = plain["points"] @ turn[:3, :3].T + turn[:3, 3]
    np.testing.assert_allclose(framed["points"], expected, atol=1e-5)
    events, header, _ = run(server, {**request, "id": 22}, {"matrix": np.zeros((4, 4))})
    assert header["type"] == "error" and "singular" in header["message"]


def test_variations_are_reproducible_and_differ_by_seed(server):
    vertices, faces = box_mesh()
    request = {"op": "variations", "count": 2, "tau": 100, "steps": 3, "seed": 7}
    _, _, first = ok(server, {**request, "id": 3}, {"vertices": vertices, "faces": faces})
    _, _, again = ok(server, {**request, "id": 4}, {"vertices": vertices, "faces": faces})
    _, _, other = ok(server, {**request, "id": 5, "seed": 8}, {"vertices": vertices, "faces": faces})
    assert first["points"].shape == (2, N, 3)
    np.testing.assert_array_equal(first["points"], again["points"])
    assert not np.allclose(first["points"], other["points"])


def test_a_similarity_means_its_step_of_the_models_own_steps(server):
    """The add-on sends the artist's similarity; the backend maps it onto the model's T (1000
    here) and reports the step it used."""
    vertices, faces = box_mesh()
    request = {"op": "variations", "count": 1, "steps": 3, "seed": 7}
    _, by_tau_header, by_tau = ok(server, {**request, "id": 40, "tau": 100}, {"vertices": vertices, "faces": faces})
    _, header, by_similarity = ok(server, {**request, "id": 41, "similarity": 0.9},
                                  {"vertices": vertices, "faces": faces})
    assert header["tau"] == by_tau_header["tau"] == 100
    assert header["category"] == "any", "an unconditional model keeps no category"
    _, header, _ = ok(server, {**request, "id": 42, "model": "categorized"}, {"vertices": vertices, "faces": faces})
    assert header["category"] in ("chair", "table"), "auto: the input's own category, as the model infers it"
    _, header, _ = ok(server, {**request, "id": 43, "model": "categorized", "category": "any"},
                      {"vertices": vertices, "faces": faces})
    assert header["category"] == "any"
    np.testing.assert_array_equal(by_similarity["points"], by_tau["points"])


def test_variations_follow_a_translated_and_scaled_input(server):
    vertices, faces = box_mesh()
    request = {"op": "variations", "count": 1, "tau": 100, "steps": 3, "seed": 3}
    _, _, base = ok(server, {**request, "id": 6}, {"vertices": vertices, "faces": faces})
    moved = vertices * 3.0 + np.array([10.0, -4.0, 2.0], np.float32)
    _, _, result = ok(server, {**request, "id": 7}, {"vertices": moved, "faces": faces})
    assert_same_shapes(result["points"], base["points"] * 3.0 + np.array([10.0, -4.0, 2.0]), size=3.0)


def test_a_shape_far_from_the_origin_keeps_its_detail(server):
    """World coordinates travel as float64: at x = 1e8, float32's spacing is 8, so a unit box
    sent or returned in float32 would come back flat. Every geometry op keeps it."""
    vertices, faces = box_mesh()
    far = np.array([1e8, -3e7, 5e7])
    near_vertices, far_vertices = vertices.astype(np.float64), vertices.astype(np.float64) + far
    request = {"op": "variations", "count": 1, "tau": 100, "steps": 3, "seed": 3}
    _, _, base = ok(server, {**request, "id": 50}, {"vertices": near_vertices, "faces": faces})
    _, _, result = ok(server, {**request, "id": 51}, {"vertices": far_vertices, "faces": faces})
    np.testing.assert_allclose(result["points"] - far, base["points"], atol=1e-5)
    mesh = {"op": "reconstruct", "resolution": 32, "normals": "estimated"}
    _, _, base = ok(server, {**mesh, "id": 52}, {"points": base["points"][0]})
    _, _, result = ok(server, {**mesh, "id": 53}, {"points": base["vertices"] + far})
    assert np.ptp(result["vertices"], axis=0).min() > 0.5, "the mesh kept its size"
    centers = np.array([[x, y, z] for x in (0.5, 1.5) for y in (0.5, 1.5) for z in (0.5, 1.5)])
    guided = {"op": "voxel_guided", "voxel_size": 1.0, "count": 1, "tau": 100, "steps": 2, "seed": 1}
    _, _, base = ok(server, {**guided, "id": 54}, {"voxel_centers": centers})
    _, _, result = ok(server, {**guided, "id": 55}, {"voxel_centers": centers + far})
    np.testing.assert_allclose(result["points"] - far, base["points"], atol=1e-5)


def test_variations_follow_a_rotated_object_through_its_matrix(server):
    vertices, faces = box_mesh()
    request = {"op": "variations", "count": 1, "tau": 100, "steps": 3, "seed": 3}
    _, _, base = ok(server, {**request, "id": 8}, {"vertices": vertices, "faces": faces})
    matrix = rotation_matrix(0.7, axis=2)
    matrix[:3, 3] = [1.0, 2.0, 3.0]
    world = vertices @ matrix[:3, :3].T.astype(np.float32) + matrix[:3, 3].astype(np.float32)
    _, _, result = ok(server, {**request, "id": 9}, {"vertices": world, "faces": faces, "matrix": matrix})
    expected = base["points"] @ matrix[:3, :3].T + matrix[:3, 3]
    assert_same_shapes(result["points"], expected, size=1.0)


def test_interpolate_gives_one_point_set_per_frame(server):
    vertices_a, faces = box_mesh(center=(0, 0, 0))
    vertices_b, _ = box_mesh(center=(4, 0, 0), size=(2.0, 1.0, 1.4))
    _, header, out = ok(server, {"id": 10, "op": "interpolate", "frames": 3, "steps": 2},
                        {"vertices_a": vertices_a, "faces_a": faces, "vertices_b": vertices_b, "faces_b": faces})
    assert out["points"].shape == (3, N, 3) and header["frames"] == 3
    assert np.isfinite(out["points"]).all()


def test_regenerate_region_keeps_the_kept_points_close(server):
    vertices, faces = box_mesh()
    _, _, base = ok(server, {"id": 11, "op": "variations", "count": 1, "tau": 50, "steps": 2},
                    {"vertices": vertices, "faces": faces})
    points = base["points"][0]
    keep = points[:, 0] < np.median(points[:, 0])
    _, _, out = ok(server, {"id": 12, "op": "regenerate_region", "sampler": "ddim", "steps": 2},
                   {"points": points, "keep": keep})
    assert out["points"].shape == (1, N, 3)


def test_voxel_guided_follows_the_guide_and_says_which_encoder(server):
    from backend.voxels import voxelize

    vertices, faces = box_mesh(center=(2, 0, 0))
    guide = voxelize((vertices, faces), 8, filled=True)
    _, header, out = ok(server, {"id": 30, "op": "voxel_guided", "count": 2, "tau": 100, "steps": 2,
                                 "voxel_size": guide.voxel_size}, {"voxel_centers": guide.centers})
    assert out["points"].shape == (2, N, 3)
    assert header["encoder"] == "standard"  # the untrained test model has no voxel encoder


def test_reconstruct_returns_a_closed_mesh_in_the_points_frame(server):
    rng = np.random.default_rng(0)
    directions = rng.standard_normal((3000, 3))
    points = (directions / np.linalg.norm(directions, axis=1, keepdims=True) * 2.0 + [5, 5, 5]).astype(np.float32)
    request = {"id": 13, "op": "reconstruct", "resolution": 64, "normals": "estimated"}
    _, header, out = ok(server, request, {"points": points})
    assert out["faces"].dtype == np.int32 and len(out["faces"]) == header["face_count"] > 100
    assert header["normals"] == "estimated"
    radii = np.linalg.norm(out["vertices"] - 5.0, axis=1)
    assert abs(radii.mean() - 2.0) < 0.1


def test_reconstruct_uses_the_network_shipped_beside_the_model(server):
    points = np.random.default_rng(1).standard_normal((500, 3)).astype(np.float32)
    _, header, out = ok(server, {"id": 30, "op": "reconstruct", "resolution": 32, "normals": "network"},
                        {"points": points})
    assert header["normals"] == "network" and len(out["faces"]) == header["face_count"]
    # auto: the network's mesh or the estimated normals', whichever fits the points better
    _, header, auto = ok(server, {"id": 33, "op": "reconstruct", "resolution": 32}, {"points": points})
    if header["normals"] == "network":
        np.testing.assert_array_equal(auto["vertices"], out["vertices"])
    else:
        assert header["normals"] == "estimated"
    _, header, _ = ok(server, {"id": 31, "op": "reconstruct", "resolution": 32, "normals": "estimated"},
                      {"points": points})
    assert header["normals"] == "estimated"
    _, header, _ = run(server, {"id": 32, "op": "reconstruct", "normals": "magic"}, {"points": points})
    assert header["type"] == "error" and "normals" in header["message"]


def test_reconstruct_smoothing_is_the_solvers_sigma(server):
    from backend.sap.reconstruct import reconstruct

    points = trimesh.sample.sample_surface(trimesh.creation.box((1.0, 2.0, 3.0)), 2000, seed=0)[0]
    for smoothing in (2.0, 6.0):
        request = {"id": 40, "op": "reconstruct", "resolution": 32, "normals": "estimated", "smoothing": smoothing}
        _, _, out = ok(server, request, {"points": points})
        expected = reconstruct(points, resolution=32, sigma=smoothing)
        np.testing.assert_allclose(out["vertices"], expected.vertices)
    _, header, _ = run(server, {"id": 41, "op": "reconstruct", "smoothing": 0.1}, {"points": points})
    assert header["type"] == "error" and "smoothing" in header["message"]


def test_output_mesh_reconstructs_every_result(server):
    vertices, faces = box_mesh()
    _, header, out = ok(server, {"id": 14, "op": "variations", "count": 2, "tau": 50, "steps": 2, "output": "mesh",
                                 "resolution": 32}, {"vertices": vertices, "faces": faces})
    assert len(header["normals"]) == 2 and set(header["normals"]) <= {"network", "estimated"}
    for k in range(2):
        assert out[f"mesh_vertices_{k}"].shape[1] == 3 and out[f"mesh_faces_{k}"].shape[1] == 3


def test_cancel_stops_a_long_job_within_a_step_and_the_next_request_works(server):
    vertices, faces = box_mesh()
    server.send({"id": 15, "op": "variations", "count": 1, "tau": 1000, "sampler": "ddpm"},
                {"vertices": vertices, "faces": faces})
    assert server.reply()[0]["type"] == "progress"
    server.send({"id": 16, "op": "cancel", "target": 15})
    replies = []

    def finished(request_id):
        return any(r["id"] == request_id and r["type"] != "progress" for r in replies)

    while not (finished(15) and finished(16)):  # the two replies may come in either order
        replies.append(server.reply()[0])
        assert len(replies) < 1000, "the job was not cancelled"
    final = next(r for r in replies if r["id"] == 15 and r["type"] != "progress")
    assert final["type"] == "error" and final["code"] == "cancelled"
    acknowledged = [i for i, r in enumerate(replies) if r["id"] == 16]
    assert acknowledged and replies[acknowledged[0]]["cancelled"] is True
    # The acknowledgement leaves when the server reads the cancel; at most the step then
    # running may still report before the job ends.
    steps_after_cancel = [r for r in replies[acknowledged[0]:] if r["type"] == "progress"]
    assert len(steps_after_cancel) <= 1
    ok(server, {"id": 17, "op": "hello"})


@pytest.mark.parametrize("request_fields, arrays, message", [
    ({"op": "variations"}, {"vertices": np.zeros((0, 3), np.float32)}, "empty"),
    ({"op": "variations"}, {"vertices": np.array([[0, 0, 0], [np.nan, 0, 0], [1, 1, 1]], np.float32),
                            "faces": np.array([[0, 1, 2]], np.int32)}, "NaN"),
    ({"op": "variations", "tau": 5000}, {"vertices": box_mesh()[0], "faces": box_mesh()[1]}, "tau"),
    ({"op": "variations", "similarity": 1.5}, {"vertices": box_mesh()[0], "faces": box_mesh()[1]}, "similarity"),
    ({"op": "variations", "similarity": "high"}, {"vertices": box_mesh()[0], "faces": box_mesh()[1]}, "similarity"),
    ({"op": "variations", "similarity": 0.5, "tau": 10}, {"vertices": box_mesh()[0], "faces": box_mesh()[1]},
     "not both"),
    ({"op": "voxel_guided", "voxel_size": 0.1, "similarity": -1}, {"voxel_centers": np.zeros((4, 3), np.float32)},
     "similarity"),
    ({"op": "variations", "model": "nonexistent"}, {"vertices": box_mesh()[0]}, "Unknown model"),
    ({"op": "variations", "category": "lamp"}, {"vertices": box_mesh()[0], "faces": box_mesh()[1]},
     "category must be one of any for model untrained"),
    ({"op": "variations"}, {"vertices": np.ones((10, 3), np.float32)}, "no size"),
    ({"op": "variations"}, {}, "vertices"),
    ({"op": "sample", "steps": 0}, {}, "steps"),
    ({"op": "sample", "output": "voxels"}, {}, "output"),
    ({"op": "sample", "center": "abc"}, {}, "center"),
    ({"op": "sample", "center": {"x": 1}}, {}, "center"),
    ({"op": "sample", "center": [1, "2", 3]}, {}, "center"),
    ({"op": "sample", "center": [1, 2]}, {}, "center"),
    ({"op": "sample", "center": [10 ** 400, 0, 0]}, {}, "center"),
    ({"op": "reconstruct"}, {"points": np.zeros((5, 3), np.float32)}, "points"),
    ({"op": "regenerate_region"}, {"points": np.zeros((N, 3), np.float32), "keep": np.ones(N, bool)}, "keep"),
    ({"op": "voxel_guided", "voxel_size": 0.1}, {"voxel_centers": np.zeros((0, 3), np.float32)}, "voxel"),
    ({"op": "voxel_guided"}, {"voxel_centers": np.zeros((4, 3), np.float32)}, "voxel_size"),
    ({"op": "voxel_guided", "voxel_size": 0.1}, {"voxel_centers": np.zeros((128**3 + 1, 3), np.float32)},
     "more than the 2,097,152 of a solid 128³ guide"),
])
def test_bad_requests_get_clear_errors_and_the_server_lives(server, request_fields, arrays, message):
    _, header, _ = run(server, {"id": 20, **request_fields}, arrays)
    assert header["type"] == "error" and header["code"] == "bad_request", header
    assert message.lower() in header["message"].lower(), header["message"]
    ok(server, {"id": 21, "op": "hello"})


def test_five_million_face_mesh_is_handled(server):
    rng = np.random.default_rng(0)
    vertices = rng.standard_normal((2_500_000, 3)).astype(np.float32)
    faces = rng.integers(0, len(vertices), size=(5_000_000, 3), dtype=np.int32)
    _, header, out = run(server, {"id": 22, "op": "variations", "count": 1, "tau": 10, "steps": 1},
                         {"vertices": vertices, "faces": faces})
    assert header["type"] == "result", header
    assert out["points"].shape == (1, N, 3)
