"""The generation commands of `python -m backend`, as a user runs them."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import trimesh

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from backend.checkpoint import save_model
    from backend.config import get_config
    from backend.data.normalization import ShapeBoxNormalization
    from backend.models import LionModel

    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    save_model(str(folder / "untrained.safetensors"), LionModel(get_config("tiny"), ShapeBoxNormalization()))
    return folder


def backend_command(*args):
    return subprocess.run([sys.executable, "-m", "backend", *map(str, args)], cwd=REPO_ROOT, capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=REPO_ROOT, OMP_NUM_THREADS="1"), timeout=600)


def test_sample_then_variations_then_interpolate(model_dir, tmp_path):
    result = backend_command("sample", "--count", 2, "--steps", 2, "-o", tmp_path / "s.ply", "--model-dir", model_dir)
    assert result.returncode == 0, result.stderr
    sampled = trimesh.load(tmp_path / "s_0.ply")
    assert len(sampled.vertices) == 2048

    box = trimesh.creation.box(extents=(1.0, 0.4, 0.6))
    box.export(tmp_path / "box.obj")
    result = backend_command("variations", tmp_path / "box.obj", "--count", 3, "--steps", 2, "--tau", 50,
                             "--category", "any", "-o", tmp_path / "v.npy", "--model-dir", model_dir)
    assert result.returncode == 0, result.stderr
    assert np.load(tmp_path / "v.npy").shape == (3, 2048, 3)

    result = backend_command("interpolate", tmp_path / "box.obj", tmp_path / "s_0.ply", "--frames", 3, "--steps", 2,
                             "-o", tmp_path / "i.npy", "--model-dir", model_dir)
    assert result.returncode == 0, result.stderr
    assert np.load(tmp_path / "i.npy").shape == (3, 2048, 3)


def test_voxel_guided_from_a_mesh(model_dir, tmp_path):
    trimesh.creation.box(extents=(1.0, 0.4, 0.6)).export(tmp_path / "box.obj")
    result = backend_command("voxel-guided", tmp_path / "box.obj", "--resolution", 6, "--count", 2, "--steps", 2,
                             "-o", tmp_path / "g.npy", "--model-dir", model_dir)
    assert result.returncode == 0, result.stderr
    assert np.load(tmp_path / "g.npy").shape == (2, 2048, 3)


def test_bad_input_is_a_clear_error(model_dir, tmp_path):
    result = backend_command("variations", tmp_path / "missing.obj", "-o", tmp_path / "v.npy", "--model-dir", model_dir)
    assert result.returncode == 2 and "not found" in result.stderr
    np.save(tmp_path / "nan.npy", np.full((10, 3), np.nan, np.float32))
    result = backend_command("variations", tmp_path / "nan.npy", "-o", tmp_path / "v.npy", "--model-dir", model_dir)
    assert result.returncode == 2 and "NaN" in result.stderr
    result = backend_command("sample", "-o", tmp_path / "s.txt", "--model-dir", model_dir)
    assert result.returncode == 2 and "--out" in result.stderr
    # A mesh file with one NaN vertex: refused by name, not silently repaired by dropping faces.
    obj = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv nan 0 1\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n"
    (tmp_path / "nan.obj").write_text(obj)
    result = backend_command("variations", tmp_path / "nan.obj", "-o", tmp_path / "v.npy", "--model-dir", model_dir)
    assert result.returncode == 2 and "1 of the vertices are NaN" in result.stderr, result.stderr


def test_the_cli_reads_shapes_in_float64():
    from backend.cli._generation import read_shape

    far = np.array([[1e8, 0, 0], [1e8 + 1, 0, 0], [1e8, 1, 0], [1e8, 0, 1]])
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"far-{os.getpid()}.obj")
    try:
        with open(path, "w") as f:
            f.write("".join(f"v {x:.17g} {y:.17g} {z:.17g}\n" for x, y, z in far) + "f 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n")
        vertices, faces = read_shape(path)
    finally:
        os.remove(path)
    assert vertices.dtype == np.float64 and np.array_equal(vertices, far) and faces.shape == (4, 3)


def test_sample_by_category_from_the_command_line(tmp_path):
    from backend.checkpoint import save_model
    from backend.config import get_config
    from backend.data.normalization import ShapeBoxNormalization
    from backend.models import LionModel

    config = get_config("tiny")
    config.shape_prior.categories = ["chair", "table"]
    torch.manual_seed(0)
    save_model(str(tmp_path / "kinds.safetensors"), LionModel(config, ShapeBoxNormalization()))
    result = backend_command("sample", "--category", "table", "--guidance", 3, "--count", 1, "--steps", 2,
                             "-o", tmp_path / "t.npy", "--model-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    assert np.load(tmp_path / "t.npy").shape == (1, 2048, 3)
    result = backend_command("sample", "--category", "lamp", "--steps", 2, "-o", tmp_path / "l.npy",
                             "--model-dir", tmp_path)
    assert result.returncode != 0 and "any, chair, table" in result.stderr
