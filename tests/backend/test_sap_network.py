"""The point-to-oriented-points network, its checkpoints and its training (the sap stage's loop)."""
import json

import numpy as np
import pytest
import torch
import trimesh

from backend.sap.network import (
    NetworkConfig,
    PointsToOrientedPoints,
    load_network,
    parameter_count,
    pool_to_grid,
    sample_features,
    save_network,
)
from backend.sap.training import TrainingBatch, estimate_surface_normals, indicator_loss, make_training_batch
from backend.train.sap import main as train_sap
from test_train import finish, logged_steps, train

SMALL_SETTINGS = {"feature_grid": 16, "channels": 16, "unet_levels": 2, "offsets_per_point": 2}
SMALL = NetworkConfig(**SMALL_SETTINGS)


def _meshes():
    """Two closed shapes: an ellipsoid and a box."""
    ellipsoid = trimesh.creation.icosphere(subdivisions=3)
    ellipsoid.apply_scale((1.0, 0.6, 0.8))
    return {"ellipsoid": ellipsoid, "box": trimesh.creation.box((1.0, 0.5, 0.8))}


def _surfaces(count=3000):
    """Two clean oriented shapes: an ellipsoid and a box, float32 [2, count, 3] each."""
    points, normals = [], []
    for mesh in _meshes().values():
        sample, faces = trimesh.sample.sample_surface(mesh, count, seed=0)
        points.append(sample)
        normals.append(mesh.face_normals[faces])
    return torch.tensor(np.stack(points)).float(), torch.tensor(np.stack(normals)).float()


def test_default_network_is_small_and_maps_points_to_oriented_copies():
    torch.manual_seed(0)
    network = PointsToOrientedPoints()
    print(f"default SAP network: {parameter_count(network)} parameters")
    assert 100_000 < parameter_count(network) < 1_000_000
    points = torch.rand(2, 300, 3) * 0.8 + 0.1
    oriented_points, normals = network(points)
    copies = network.config.offsets_per_point
    assert oriented_points.shape == normals.shape == (2, 300 * copies, 3)
    displacement = oriented_points.view(2, 300, copies, 3) - points.unsqueeze(2)
    assert displacement.abs().max() < 0.2
    (oriented_points.sum() + normals.sum()).backward()
    assert all(p.grad is not None for p in network.parameters())


def test_feature_grid_axes_match_the_point_axes():
    # Each grid cell holds its own centre's coordinates, so sampling must give back the point.
    resolution = 8
    centres = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution
    grid = torch.stack(torch.meshgrid(centres, centres, centres, indexing="ij"))[None]  # [1, 3, R, R, R]
    points = torch.rand(1, 100, 3, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    torch.testing.assert_close(sample_features(grid, points), points)
    # Pooling a feature into the cell of a point and sampling at that cell's centre round-trips
    # (one point per cell, so the cell's mean is the point's own feature).
    generator = torch.Generator().manual_seed(1)
    distinct = torch.randperm(SMALL.feature_grid**3, generator=generator)[:100]
    index = torch.stack([distinct // 256, distinct // 16 % 16, distinct % 16], dim=-1).float()
    points = ((index + 0.1 + 0.8 * torch.rand(100, 3, generator=generator)) / SMALL.feature_grid)[None]
    network = PointsToOrientedPoints(SMALL)
    cell = network._cell_index(points)
    pooled = pool_to_grid(points, cell, SMALL.feature_grid)
    cell_centres = ((points * SMALL.feature_grid).floor() + 0.5) / SMALL.feature_grid
    torch.testing.assert_close(sample_features(pooled, cell_centres), points)


@pytest.mark.parametrize(
    "settings, message",
    [({"feature_grid": 12}, "feature_grid"), ({"unet_levels": 5, "feature_grid": 16}, "unet_levels"),
     ({"channels": 0}, "channels"), ({"offset_scale": 0.0}, "offset_scale")],
)
def test_bad_configs_are_named(settings, message):
    with pytest.raises(ValueError, match=message):
        NetworkConfig(**settings)


def test_forward_checks_its_input():
    with pytest.raises(ValueError, match="points"):
        PointsToOrientedPoints(SMALL)(torch.rand(10, 3))


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(1)
    network = PointsToOrientedPoints(SMALL).eval()
    path = str(tmp_path / "sap.safetensors")
    save_network(network, path)
    loaded = load_network(path)
    assert loaded.config == SMALL
    points = torch.rand(1, 200, 3)
    with torch.no_grad():
        for mine, theirs in zip(network(points), loaded(points)):
            torch.testing.assert_close(mine, theirs, rtol=0, atol=0)
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a Shape As Points"):
        load_network(str(tmp_path / "other.safetensors"))


def _sap_run_options(tmp_path, shapes=("ellipsoid", "box")):
    """Options of a small sap stage run on a folder holding the meshes of `shapes`."""
    data = tmp_path / "meshes"
    data.mkdir(exist_ok=True)
    for name in shapes:
        _meshes()[name].export(data / f"{name}.obj")
    network_config = tmp_path / "network.json"
    network_config.write_text(json.dumps(SMALL_SETTINGS))
    return ["--data", str(data), "--lr", "3e-3", "--resolution", "32", "--input-points", "256",
            "--surface-points", "3000", "--noise", "0.01", "--network-config", str(network_config)]


def test_training_lowers_the_indicator_loss(tmp_path):
    # The sap stage's own loop, on the two shapes of _surfaces (a batch of both, every step).
    out = tmp_path / "run"
    code, output = finish(train("sap", out, *_sap_run_options(tmp_path), steps=12))
    assert code == 0, output
    logged = [entry for entry in logged_steps(out) if "loss" in entry]
    assert [entry["step"] for entry in logged] == list(range(1, 13))
    losses = [entry["loss"] for entry in logged]
    assert all(0.0 <= loss <= 4.0 for loss in losses)
    assert np.mean(losses[-3:]) < 0.25 * losses[0]
    network = load_network(str(out / "sap.safetensors"))
    generator = torch.Generator().manual_seed(0)
    surface_points, surface_normals = _surfaces()
    batch = make_training_batch(surface_points, surface_normals, 256, noise=0.01, generator=generator)
    with torch.no_grad():
        assert indicator_loss(network, batch, resolution=32).item() < 0.25 * losses[0]


def test_training_batches_hold_noisy_subsets_of_the_surface():
    surface_points, surface_normals = _surfaces(1000)
    noisy = make_training_batch(surface_points, surface_normals, 400, 0.01, torch.Generator().manual_seed(5))
    clean = make_training_batch(surface_points, surface_normals, 400, 0.0, torch.Generator().manual_seed(5))
    assert noisy.noisy_points.shape == (2, 400, 3)
    distances = torch.cdist(clean.noisy_points, surface_points, compute_mode="donot_use_mm_for_euclid_dist")
    assert distances.min(dim=-1).values.max() < 1e-6
    # The same generator state draws the same subset, so the difference is the noise alone:
    # standard deviation 0.01 of the largest side (2 for the ellipsoid, 1 for the box).
    noise_std = (noisy.noisy_points - clean.noisy_points).std(dim=(1, 2))
    torch.testing.assert_close(noise_std, torch.tensor([0.02, 0.01]), rtol=0.1, atol=0)
    with pytest.raises(ValueError, match="input_count"):
        make_training_batch(surface_points, surface_normals, 2000, noise=0.01)
    with pytest.raises(ValueError, match="noise"):
        make_training_batch(surface_points, surface_normals, 10, noise=-1.0)


def test_bad_batches_and_steps_are_refused(tmp_path, capsys):
    surface_points, surface_normals = _surfaces(200)
    broken = surface_points.clone()
    broken[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="noisy_points"):
        TrainingBatch(broken, surface_points, surface_normals)
    with pytest.raises(ValueError, match="surface_normals"):
        TrainingBatch(surface_points, surface_points, surface_normals[:, :10])
    # The sap stage refuses a step count below 1, and data that cannot fill one batch.
    options = _sap_run_options(tmp_path, shapes=("box",))
    with pytest.raises(SystemExit):
        train_sap(["--out", str(tmp_path / "none"), "--steps", "0", "--device", "cpu", *options])
    assert "--steps" in capsys.readouterr().err
    with pytest.raises(ValueError, match="1 shapes: too few for batch size 2"):
        train_sap(["--out", str(tmp_path / "short"), "--steps", "2", "--batch-size", "2", "--device", "cpu", *options])


def test_surface_normals_can_be_estimated_for_clean_points():
    surface_points, surface_normals = _surfaces(2000)
    estimated = estimate_surface_normals(surface_points)
    assert estimated.dtype == torch.float32 and estimated.shape == surface_points.shape
    agreement = (estimated * surface_normals).sum(dim=-1)
    assert (agreement > 0.5).float().mean() > 0.95


def test_oriented_surfaces_carry_the_meshs_normals_into_the_normalized_frame():
    # A per-axis scale tilts normals: they must still point out of the (normalized) mesh.
    from backend.data.datasets import ProceduralDataset
    from backend.data.normalization import GlobalNormalization
    from backend.data.procedural import generate_shape, sample_shape_surface
    from backend.train.sap import OrientedSurfaces

    normalization = GlobalNormalization(mean=[0.1, -0.2, 0.3], std=[0.5, 2.0, 1.0])
    dataset = ProceduralDataset(["table"], 2, points_per_pool=3000, normalization=normalization)
    oriented = OrientedSurfaces(dataset, 1000, seed=0).oriented_points(1)  # every point of table 1
    points, normals = oriented[:, :3], oriented[:, 3:]
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-9)
    # The twin: the normals of the normalized mesh's own faces (trimesh, from the moved vertices).
    shape = generate_shape("table", 1)
    surface = sample_shape_surface("table", 1, 3000)
    np.testing.assert_allclose(points * normalization.std + normalization.mean, surface.points, atol=1e-6)
    mesh = trimesh.Trimesh((shape.vertices - normalization.mean) / normalization.std, shape.faces, process=False)
    np.testing.assert_allclose(normals, mesh.face_normals[surface.face_index], atol=1e-5)


def test_reconstructed_batches_are_the_vae_decoding_of_a_clean_subset_plus_noise():
    from backend.config import get_config
    from backend.models import LionModel
    from backend.sap.training import make_reconstructed_training_batch

    torch.manual_seed(0)
    vae = LionModel(get_config("tiny")).vae.eval()
    surface_points, surface_normals = _surfaces(1000)
    batch = make_reconstructed_training_batch(vae, surface_points, surface_normals, 300, 0.0,
                                              torch.Generator().manual_seed(3))
    assert batch.noisy_points.shape == (2, 300, 3) and not batch.noisy_points.requires_grad
    # The hand-written twin: the same draws, in the same order, from the same generator.
    generator = torch.Generator().manual_seed(3)
    clean = make_training_batch(surface_points, surface_normals, 300, 0.0, generator).noisy_points
    with torch.no_grad():
        encoding = vae.encode(clean, sample=True, generator=generator)
        decoded = vae.decode(encoding.shape_latent, encoding.latent_points)
    torch.testing.assert_close(batch.noisy_points, decoded)
    assert batch.surface_points is surface_points and batch.surface_normals is surface_normals
    noisy = make_reconstructed_training_batch(vae, surface_points, surface_normals, 300, 0.01,
                                              torch.Generator().manual_seed(3))
    noise_std = (noisy.noisy_points - decoded).std(dim=(1, 2))
    torch.testing.assert_close(noise_std, torch.tensor([0.02, 0.01]), rtol=0.15, atol=0)


def test_reconstructed_batches_take_a_share_of_shapes_through_the_point_template():
    import dataclasses

    from backend.config import PointTemplateConfig, get_config
    from backend.models import LionModel
    from backend.sap.training import make_reconstructed_training_batch

    torch.manual_seed(0)
    model = LionModel(dataclasses.replace(get_config("tiny"), point_template=PointTemplateConfig(
        hidden_channels=[32]))).eval()
    count = model.config.vae.num_points  # the template makes one latent point per output point
    surface_points, surface_normals = _surfaces(count + 100)

    def batch(share, seed):
        return make_reconstructed_training_batch(model.vae, surface_points, surface_normals, count, 0.0,
                                                 torch.Generator().manual_seed(seed), model.point_template,
                                                 share).noisy_points

    def twins(seed):
        """(through the template, through the encoder) for every shape, drawn as the batch draws."""
        generator = torch.Generator().manual_seed(seed)
        clean = make_training_batch(surface_points, surface_normals, count, 0.0, generator).noisy_points
        with torch.no_grad():
            encoding = model.vae.encode(clean, sample=True, generator=generator)
            mean = encoding.shape_latent_mean
            return (model.vae.decode(mean, model.point_template(mean)),
                    model.vae.decode(encoding.shape_latent, encoding.latent_points))

    templated, encoded = twins(4)
    torch.testing.assert_close(batch(1.0, 4), templated)
    torch.testing.assert_close(batch(0.0, 4), encoded)
    # A share in between picks one kind per shape; over a few draws both kinds occur.
    kinds = []
    for seed in range(6):
        points, (templated, encoded) = batch(0.5, seed), twins(seed)
        for shape, from_template, from_encoder in zip(points, templated, encoded):
            is_templated = torch.allclose(shape, from_template)
            assert is_templated != torch.allclose(shape, from_encoder)
            kinds.append(is_templated)
    assert 0 < sum(kinds) < len(kinds)
    with pytest.raises(ValueError, match="template_share"):
        make_reconstructed_training_batch(model.vae, surface_points, surface_normals, count, 0.0, None, None, 0.5)
    with pytest.raises(ValueError, match="input_count must match"):
        make_reconstructed_training_batch(model.vae, surface_points, surface_normals, 300, 0.0, None,
                                          model.point_template, 0.5)
