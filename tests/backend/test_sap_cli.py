"""`python -m backend reconstruct`: formats in and out, errors as messages and exit status 2."""
import numpy as np
import pytest
import torch
import trimesh

from backend.__main__ import main
from backend.sap.network import NetworkConfig, PointsToOrientedPoints, save_network


def _sphere_points(count=1500):
    return trimesh.sample.sample_surface(trimesh.creation.icosphere(subdivisions=3), count, seed=0)[0]


@pytest.mark.parametrize("output", ["mesh.ply", "mesh.obj", "mesh.stl", "mesh.off", "mesh.glb"])
def test_points_file_to_each_mesh_format(tmp_path, output):
    source = tmp_path / "points.ply"
    trimesh.PointCloud(_sphere_points()).export(source)
    target = tmp_path / output
    assert main(["reconstruct", str(source), "-o", str(target), "--resolution", "32"]) == 0
    mesh = trimesh.load(target, force="mesh")
    assert mesh.is_watertight and mesh.volume > 0
    assert np.linalg.norm(mesh.vertices, axis=1).mean() == pytest.approx(1.0, abs=0.1)


def test_npy_points_and_a_sampled_mesh_and_a_network(tmp_path):
    np.save(tmp_path / "points.npy", _sphere_points().astype(np.float32))
    assert main(["reconstruct", str(tmp_path / "points.npy"), "-o", str(tmp_path / "a.ply"), "--resolution", "32"]) == 0
    trimesh.creation.box((1.0, 2.0, 3.0)).export(tmp_path / "box.obj")
    assert main(["reconstruct", str(tmp_path / "box.obj"), "--sample", "3000", "-o", str(tmp_path / "b.off"),
                 "--resolution", "64"]) == 0
    box = trimesh.load(tmp_path / "b.off")
    # within two cells of the 64 grid (the box's 3.0 spans 0.8 of it): the surface passes through
    # the points, which at the box's edges read below the Poisson field's mean level, and the
    # level that follows them bulges the faces next to the edges by about a cell
    np.testing.assert_allclose(box.extents, (1.0, 2.0, 3.0), atol=2 * 3.0 / 0.8 / 64)
    np.testing.assert_allclose(box.bounds.mean(axis=0), 0.0, atol=0.02)
    torch.manual_seed(0)
    save_network(PointsToOrientedPoints(NetworkConfig(feature_grid=16, channels=16, unet_levels=2)),
                 str(tmp_path / "sap.safetensors"))
    assert main(["reconstruct", str(tmp_path / "points.npy"), "-o", str(tmp_path / "c.ply"), "--resolution", "32",
                 "--network", str(tmp_path / "sap.safetensors")]) == 0
    assert trimesh.load(tmp_path / "c.ply").is_watertight


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["missing.ply", "-o", "out.ply"], "not found"),
        (["points.npy", "-o", "out.npy"], "output must be one of"),
        (["points.npy", "-o", "out.ply", "--resolution", "100"], "resolution"),
        (["bad.npy", "-o", "out.ply"], "shape"),
        (["nan.npy", "-o", "out.ply"], "NaN"),
        (["points.npy", "--sample", "100", "-o", "out.ply"], "--sample needs a mesh"),
        (["points.txt", "-o", "out.ply"], "input must be one of"),
    ],
)
def test_bad_input_gives_a_message_and_status_2(tmp_path, monkeypatch, capsys, arguments, message):
    monkeypatch.chdir(tmp_path)
    np.save("points.npy", _sphere_points(200))
    np.save("bad.npy", np.zeros((100, 2)))
    nan_points = _sphere_points(200)
    nan_points[5, 1] = np.nan
    np.save("nan.npy", nan_points)
    (tmp_path / "points.txt").write_text("1 2 3\n")
    assert main(["reconstruct", *arguments]) == 2
    assert message in capsys.readouterr().err
