"""The three datasets: ShapeNet PC15k folders, mesh folders with a cache, procedural shapes."""
import glob
import importlib.util
import json
import os
import warnings

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree
from torch.utils.data import DataLoader

from backend.data import mesh_folder
from backend.data.datasets import MeshFolderDataset, ProceduralDataset, ShapeNetDataset
from backend.data.normalization import GlobalNormalization, ShapeBoxNormalization, normalization_from_json
from backend.data.sampling import sample_surface_points
from backend.data.shapenet import resolve_categories

CHAIR, AIRPLANE = "03001627", "02691156"


@pytest.fixture(scope="module")
def pc15k_root(tmp_path_factory):
    """A small PC15k tree: 3 train and 2 val shapes per category, 15000 points each. Points
    past index 10000 sit at x = 50, so a training draw from them is easy to spot."""
    root = tmp_path_factory.mktemp("pc15k")
    rng = np.random.default_rng(0)
    for offset, synset in enumerate((CHAIR, AIRPLANE)):
        for split, count in (("train", 3), ("val", 2)):
            os.makedirs(root / synset / split)
            for k in range(count):
                points = rng.normal(offset, 0.3, size=(15000, 3)).astype(np.float32)
                points[10000:, 0] = 50.0
                np.save(root / synset / split / f"shape{k}.npy", points)
    return root


def test_categories_by_name_or_synset():
    assert resolve_categories("chair") == [CHAIR]
    assert resolve_categories(["airplane", CHAIR]) == sorted([AIRPLANE, CHAIR])
    assert resolve_categories("chair, airplane") == sorted([AIRPLANE, CHAIR])
    assert len(resolve_categories("all")) == 55
    with pytest.raises(ValueError, match="unknown category 'spaceship'"):
        resolve_categories("spaceship")


def test_shapenet_training_items_and_global_statistics(pc15k_root):
    train = ShapeNetDataset(str(pc15k_root), ["chair", AIRPLANE], "train")
    assert len(train) == 6 and {train.category(i) for i in range(6)} == {"chair", "airplane"}
    assert train.name(0) == f"{AIRPLANE}/train/shape0"
    everything = np.concatenate([np.load(str(pc15k_root / train.name(i)) + ".npy") for i in range(6)])
    assert np.allclose(train.normalization.mean, everything.mean(axis=0), atol=1e-4)
    assert np.allclose(train.normalization.std, everything.std(), atol=1e-4)

    item = train[0]
    assert item.shape == (2048, 3) and item.dtype == torch.float32
    center, scale = train.shape_statistics(0)
    original = item.numpy() * scale + center
    assert (original[:, 0] < 10).all(), "training draws only from the first 10000 points"
    assert torch.equal(train[0], item)
    train.set_epoch(1)
    assert not torch.equal(train[0], item)
    batch = next(iter(DataLoader(train, batch_size=4)))
    assert batch.shape == (4, 2048, 3)


def test_shapenet_evaluation_split_uses_first_points_and_training_statistics(pc15k_root):
    train = ShapeNetDataset(str(pc15k_root), "chair", "train", points_per_shape=512)
    val = ShapeNetDataset(str(pc15k_root), "chair", "val", points_per_shape=512, normalization=train.normalization)
    assert len(val) == 2 and val.normalization is train.normalization
    stored = np.load(str(pc15k_root / val.name(1)) + ".npy")[:512]
    assert np.allclose(val[1].numpy(), train.normalization.normalize(stored.astype(np.float64)), atol=1e-5)
    val.set_epoch(3)
    assert np.allclose(val[1].numpy(), train.normalization.normalize(stored.astype(np.float64)), atol=1e-5)


def test_evaluation_arrays_restore_the_stored_points(pc15k_root):
    train = ShapeNetDataset(str(pc15k_root), "chair", "train", points_per_shape=256)
    val = ShapeNetDataset(str(pc15k_root), "chair", "val", points_per_shape=256, normalization=train.normalization)
    points, center, scale = val.evaluation_arrays()
    assert points.shape == (2, 256, 3) and points.dtype == np.float32
    assert center.shape == (2, 1, 3) and scale.shape == (2, 1, 1)
    stored = np.stack([np.load(str(pc15k_root / val.name(i)) + ".npy")[:256] for i in range(2)])
    assert np.allclose(points * scale + center, stored, atol=1e-4)


def test_shapenet_box_normalization_round_trips(pc15k_root):
    train = ShapeNetDataset(str(pc15k_root), "airplane", "train", normalization="shape_box", subsample="first")
    for index in range(len(train)):
        center, scale = train.shape_statistics(index)
        stored = np.load(str(pc15k_root / train.name(index)) + ".npy")[:2048]
        assert np.allclose(train[index].numpy() * scale + center, stored, atol=1e-4)
        assert np.abs(train[index].numpy()).max() <= 1.0 + 1e-6


def test_shapenet_skips_unreadable_files_and_reports_missing_folders(pc15k_root, tmp_path):
    broken_root = tmp_path / "pc15k"
    (broken_root / CHAIR / "train").mkdir(parents=True)
    np.save(broken_root / CHAIR / "train" / "good.npy", np.zeros((100, 3), np.float32))
    np.save(broken_root / CHAIR / "train" / "flat.npy", np.zeros((100, 2), np.float32))
    (broken_root / CHAIR / "train" / "garbage.npy").write_bytes(b"not a numpy file")
    with pytest.warns(UserWarning) as caught:
        dataset = ShapeNetDataset(str(broken_root), "chair", "train", normalization="shape_box", points_per_shape=16)
    assert len(dataset) == 1
    messages = " ".join(str(w.message) for w in caught)
    assert "flat.npy" in messages and "garbage.npy" in messages
    with pytest.raises(ValueError, match="missing"):
        ShapeNetDataset(str(pc15k_root), "chair", "test")


def _write_box(path, extents=(1.0, 2.0, 3.0)):
    trimesh.creation.box(extents=extents).export(path)


def test_mesh_folder_skips_broken_files_with_their_names(tmp_path):
    folder = tmp_path / "meshes"
    folder.mkdir()
    _write_box(folder / "crate.obj")
    (folder / "empty.ply").write_bytes(b"")
    (folder / "corrupt.stl").write_bytes(b"solid x\nfacet normal oops\n\x00\x01garbage")
    (folder / "notes.txt").write_text("not a mesh, not looked at")
    with pytest.warns(UserWarning) as caught:
        dataset = MeshFolderDataset(str(folder), str(tmp_path / "cache"), points_per_shape=256, points_per_mesh=2000)
    messages = [str(w.message) for w in caught if "skipping mesh" in str(w.message)]
    assert len(messages) == 2
    assert any("empty.ply" in m for m in messages) and any("corrupt.stl" in m for m in messages)
    assert len(dataset) == 1 and dataset.name(0) == "crate.obj"
    assert sorted(os.path.basename(p) for p in dataset.skipped) == ["corrupt.stl", "empty.ply"]
    points = dataset[0]
    assert points.shape == (256, 3) and torch.isfinite(points).all()


def test_mesh_folder_reads_every_supported_format_and_names_categories_by_subfolder(tmp_path):
    folder = tmp_path / "meshes"
    for extension in ("obj", "ply", "stl", "off", "glb"):
        (folder / extension).mkdir(parents=True)
        _write_box(folder / extension / f"box.{extension}", extents=(1.0, 2.0, 4.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset = MeshFolderDataset(str(folder), str(tmp_path / "cache"), normalization="shape_box", points_per_mesh=2000)
    assert len(dataset) == 5 and sorted(dataset.category(i) for i in range(5)) == ["glb", "obj", "off", "ply", "stl"]
    for index in range(5):
        _, scale = dataset.shape_statistics(index)
        assert np.allclose(np.ptp(dataset.shapes.points(index), axis=0), [1.0, 2.0, 4.0], atol=0.05)
        assert np.allclose(scale, 2.0, atol=0.05)


def test_mesh_folder_reuses_its_cache_until_the_file_changes(tmp_path, monkeypatch):
    folder, cache = tmp_path / "meshes", tmp_path / "cache"
    folder.mkdir()
    _write_box(folder / "crate.obj")
    first = MeshFolderDataset(str(folder), str(cache), normalization="shape_box", subsample="first", points_per_mesh=3000)
    assert len(os.listdir(cache)) == 1

    loads = []
    original_loader = mesh_folder._load_mesh
    monkeypatch.setattr(mesh_folder, "_load_mesh", lambda path: loads.append(path) or original_loader(path))
    again = MeshFolderDataset(str(folder), str(cache), normalization="shape_box", subsample="first", points_per_mesh=3000)
    assert loads == [] and torch.equal(first[0], again[0])

    _write_box(folder / "crate.obj", extents=(3.0, 1.0, 1.0))
    os.utime(folder / "crate.obj", ns=(1, 1))
    changed = MeshFolderDataset(str(folder), str(cache), normalization="shape_box", subsample="first", points_per_mesh=3000)
    assert len(loads) == 1 and len(os.listdir(cache)) == 2
    center, scale = changed.shape_statistics(0)
    assert np.allclose(np.ptp(changed[0].numpy() * scale + center, axis=0), [3.0, 1.0, 1.0], atol=0.05)


def _pybullet_meshes():
    spec = importlib.util.find_spec("pybullet_data")
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted(glob.glob(os.path.join(spec.submodule_search_locations[0], "random_urdfs", "*", "*.obj")))


def test_mesh_folder_on_real_meshes_from_pybullet_data(tmp_path):
    meshes = _pybullet_meshes()
    if not meshes:
        pytest.skip("pybullet_data is not installed (pip install pybullet): its random_urdfs meshes are the real test set")
    folder = tmp_path / "meshes"
    folder.mkdir()
    for path in meshes[:24]:
        os.symlink(path, folder / os.path.basename(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset = MeshFolderDataset(str(folder), str(tmp_path / "cache"), points_per_mesh=4000, normalization="shape_box")
    assert len(dataset) == 24
    batch = torch.stack([dataset[i] for i in range(len(dataset))])
    assert batch.shape == (24, 2048, 3) and torch.isfinite(batch).all()
    assert torch.allclose(batch.abs().amax(dim=(1, 2)), torch.ones(24), atol=0.05)
    for index in range(3):
        mesh = trimesh.load(folder / dataset.name(index), force="mesh")
        center, scale = dataset.shape_statistics(index)
        original = dataset[index].numpy() * scale + center
        assert np.allclose(np.ptp(original, axis=0), mesh.extents, atol=0.05 * mesh.scale)
        dense = sample_surface_points(mesh.vertices, mesh.faces, 50000, seed=1)
        gaps = cKDTree(dense).query(original)[0]
        assert gaps.max() < 0.03 * mesh.scale, "cached points lie on the mesh surface"


def test_procedural_dataset_items_normalization_and_json(tmp_path):
    dataset = ProceduralDataset(["chair", "lamp"], shapes_per_category=2, points_per_shape=512, points_per_pool=3000)
    assert len(dataset) == 4 and [dataset.category(i) for i in range(4)] == ["chair", "lamp", "chair", "lamp"]
    assert dataset.name(3) == "lamp/1"
    stored = normalization_from_json(json.loads(json.dumps(dataset.normalization.to_json())))
    assert isinstance(stored, GlobalNormalization) and np.allclose(stored.mean, dataset.normalization.mean)
    all_points = np.concatenate([dataset.shapes.points(i) for i in range(4)])
    assert np.allclose(dataset.normalization.mean, all_points.mean(axis=0), atol=1e-5)
    assert np.allclose(dataset.normalization.std, all_points.std(), atol=1e-5)
    held_out = ProceduralDataset(["chair"], shapes_per_category=1, first_seed=1000, normalization=stored)
    assert held_out.name(0) == "chair/1000" and held_out.normalization is stored
    boxed = ProceduralDataset(["mug"], shapes_per_category=1, normalization="shape_box", points_per_pool=3000)
    assert isinstance(boxed.normalization, ShapeBoxNormalization)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"categories": ["spaceship"]}, "categories"), ({"shapes_per_category": 0}, "shapes_per_category"),
     ({"points_per_shape": 0}, "points_per_shape"), ({"subsample": "all"}, "subsample"),
     ({"normalization": "unit_sphere"}, "normalization")],
)
def test_dataset_arguments_are_validated(kwargs, message):
    arguments = {"categories": ["mug"], "shapes_per_category": 1, "points_per_pool": 500, "normalization": "shape_box"}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ProceduralDataset(**arguments)


def test_procedural_shapes_give_normals_for_their_own_points():
    from backend.data.datasets import ProceduralShapes
    from backend.data.procedural import sample_shape_surface

    shapes = ProceduralShapes(["chair", "table"], 2, points_per_shape=1500)
    normals = shapes.surface_normals(3)  # table, seed 1
    np.testing.assert_array_equal(normals, sample_shape_surface("table", 1, 1500).normals)
    np.testing.assert_array_equal(shapes.points(3), sample_shape_surface("table", 1, 1500).points)
