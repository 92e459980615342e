"""The sap and voxel-encoder training stages: real processes, checkpoints, exact resume."""
import json

import numpy as np
import pytest
import torch

from backend.checkpoint import load_model, save_model
from backend.config import get_config
from backend.data.normalization import ShapeBoxNormalization
from backend.models import LionModel
from backend.train.voxel_encoder import fit_box, guide_points, matched_latent_point_loss, nearest_indices
from test_train import check_interrupted_then_resumed_equals_uninterrupted, logged_steps

SAP_OPTIONS = ["--resolution", "32", "--surface-points", "2048", "--input-points", "512"]
SMALL_SAP_NETWORK = {"feature_grid": 16, "channels": 16, "unet_levels": 2}


def test_sap_stage_resumes_exactly(tmp_path):
    from backend.sap.network import load_network

    network_config = tmp_path / "network.json"
    network_config.write_text(json.dumps(SMALL_SAP_NETWORK))
    whole = check_interrupted_then_resumed_equals_uninterrupted(
        "sap", tmp_path, *SAP_OPTIONS, "--network-config", str(network_config))
    network = load_network(whole / "sap.safetensors")
    assert network.config.channels == 16 and network.config.feature_grid == 16
    oriented_points, normals = network(torch.rand(1, 100, 3))
    assert oriented_points.shape == normals.shape == (1, 100 * network.config.offsets_per_point, 3)
    losses = [entry["loss"] for entry in logged_steps(whole) if "loss" in entry]
    assert len(losses) == 4 and np.isfinite(losses).all()
    assert any(path.suffix == ".png" for path in (whole / "renders").iterdir())


@pytest.fixture
def tiny_model(tmp_path):
    """A freshly initialized tiny model: the stage fine-tunes whatever encoders it is given, and
    training a VAE first would only spend the test's time budget."""
    torch.manual_seed(0)
    path = tmp_path / "tiny.safetensors"
    save_model(str(path), LionModel(get_config("tiny"), ShapeBoxNormalization()), step=0,
               extra={"stage": "vae", "trained_parts": ["vae"], "typical_half_extent": 0.75})
    return path


def test_voxel_encoder_stage_resumes_exactly_and_extends_the_model(tmp_path, tiny_model):
    whole = check_interrupted_then_resumed_equals_uninterrupted(
        "voxel-encoder", tmp_path, "--model", str(tiny_model), "--max-resolution", "16")
    source, _ = load_model(tiny_model)
    model, metadata = load_model(whole / "model.safetensors")
    assert metadata["voxel_encoder"] is True and metadata["stage"] == "voxel-encoder" and metadata["step"] == 4
    assert "voxel_encoder" in metadata["trained_parts"] and metadata["typical_half_extent"] == 0.75
    assert source.voxel_encoder is None and source.encode_voxel_guide is None
    # the VAE is carried unchanged; the voxel encoder started from its encoders and moved away
    for name, value in source.vae.state_dict().items():
        assert torch.equal(model.vae.state_dict()[name], value), name
    tuned = model.voxel_encoder.shape_latent_encoder.state_dict()
    original = source.vae.shape_latent_encoder.state_dict()
    assert any(not torch.equal(tuned[name], original[name]) for name in original)

    points = torch.randn(2, model.config.vae.num_points, 3) * 0.3
    shape_latent, latent_points = model.encode_voxel_guide(points)
    assert shape_latent.shape == (2, model.config.vae.shape_latent_dim)
    assert latent_points.shape == (2, model.config.vae.num_points, model.config.latent_point_dim)


def test_matched_latent_point_loss_ignores_point_order_and_sees_differences():
    generator = torch.Generator().manual_seed(0)
    target = torch.randn(2, 64, 5, generator=generator)
    shuffled = target[:, torch.randperm(64, generator=generator)]
    assert matched_latent_point_loss(shuffled, target).item() == pytest.approx(0.0, abs=1e-12)
    moved = shuffled.clone()
    moved[..., 3:] += 0.5  # same positions, features off by 0.5: 0.25 per feature channel
    assert matched_latent_point_loss(moved, target).item() == pytest.approx(2 * 0.25 * 2 / 5, rel=1e-5)


@pytest.mark.parametrize("queries, points, channels", [(1, 1, 3), (7, 1, 4), (1, 9, 3), (33, 65, 4), (300, 200, 5)])
def test_nearest_indices_match_a_brute_force_search(queries, points, channels):
    generator = torch.Generator().manual_seed(queries * points)
    a = torch.randn(3, queries, channels, generator=generator)
    b = torch.randn(3, points, channels, generator=generator)
    brute = torch.tensor([[min(range(points), key=lambda j: float(((a[s, i] - b[s, j]) ** 2).sum()))
                           for i in range(queries)] for s in range(3)])
    assert torch.equal(nearest_indices(a, b), brute)
    assert torch.equal(nearest_indices(a.double(), b.double()), brute)


def test_guide_points_lie_on_the_clean_shapes_box():
    rng = np.random.default_rng(0)
    shape = rng.uniform(-1, 1, size=(5000, 3)) * [0.5, 1.0, 0.2] + [0.1, 0.0, -0.3]
    clean = shape[:512]
    guide = guide_points(shape, clean, 8, rng)
    assert guide.shape == (512, 3) and guide.dtype == np.float32
    clean_side = (clean.max(axis=0) - clean.min(axis=0)).max()
    assert (guide.max(axis=0) - guide.min(axis=0)).max() == pytest.approx(clean_side, rel=1e-5)
    assert (guide.max(axis=0) + guide.min(axis=0)) / 2 == pytest.approx((clean.max(axis=0) + clean.min(axis=0)) / 2,
                                                                         abs=1e-5)
    assert np.allclose(fit_box(clean, clean), clean)


def test_vae_stage_continues_from_a_model_with_its_config_and_normalization(tmp_path, tiny_model):
    from test_train import finish, train

    code, output = finish(train("vae", tmp_path / "continued", "--init", str(tiny_model), "--kl-start", "0.05",
                                "--kl-max", "0.1", "--kl-shape-scale", "0.1", steps=2))
    assert code == 0, output
    source, _ = load_model(tiny_model)
    model, metadata = load_model(tmp_path / "continued" / "model.safetensors")
    assert metadata["continued_from"] == str(tiny_model) and metadata["step"] == 2
    assert model.config == source.config and model.normalization.to_json() == source.normalization.to_json()
    changed = [name for name, value in source.vae.state_dict().items()
               if not torch.equal(model.vae.state_dict()[name], value)]
    assert changed, "the VAE trained on from the given weights"
    entry = next(e for e in logged_steps(tmp_path / "continued") if "loss" in e)
    assert entry["kl_weight"] == pytest.approx(0.05)
    assert {"z0_spread", "z0_sigma", "h0_sigma"} <= set(entry)


def test_vae_stage_decoder_only_keeps_the_encoders_and_records_the_latent_point_noise(tmp_path, tiny_model):
    from test_train import finish, train

    code, output = finish(train("vae", tmp_path / "decoder", "--init", str(tiny_model), "--decoder-only",
                                "--latent-point-noise", "0.15", steps=2))
    assert code == 0, output
    source, _ = load_model(tiny_model)
    model, _ = load_model(tmp_path / "decoder" / "model.safetensors")
    assert model.config.vae.latent_point_noise == 0.15
    assert source.config.vae.latent_point_noise == 0.0
    trained = model.vae.state_dict()
    changed = {name for name, value in source.vae.state_dict().items() if not torch.equal(trained[name], value)}
    assert changed and all(name.startswith("decoder.") for name in changed), sorted(changed)[:5]


def test_decoder_only_needs_a_trained_vae(tmp_path):
    from test_train import finish, train

    code, output = finish(train("vae", tmp_path / "fresh", "--decoder-only", steps=1))
    assert code != 0 and "--decoder-only needs --init" in output


def test_kl_shape_scale_weighs_only_the_z0_term():
    from backend.train.vae import vae_loss

    torch.manual_seed(0)
    vae = LionModel(get_config("tiny")).vae.eval()  # no dropout: both passes compute the same
    points = torch.randn(2, 2048, 3) * 0.3
    losses = {scale: vae_loss(vae, points, 0.5, torch.Generator().manual_seed(1), scale) for scale in (0.0, 1.0)}
    (without, parts), (with_z, _) = losses[0.0], losses[1.0]
    expected = 0.5 * parts["kl_shape_latent"]
    assert (with_z - without).item() == pytest.approx(expected, rel=1e-4)


def test_low_noise_share_of_the_h0_priors_steps():
    from backend.train.prior import training_steps

    t = training_steps(20000, 1000, 0.5, 400, torch.Generator().manual_seed(0))
    assert t.dtype == torch.int64 and int(t.min()) >= 1 and int(t.max()) <= 1000
    # Half uniform on 1..1000 (40% of those at or below 400), half on 1..400: 70% at or below 400.
    assert abs((t <= 400).float().mean().item() - 0.7) < 0.02
    uniform = training_steps(20000, 1000, 0.0, 400, torch.Generator().manual_seed(0))
    assert abs((uniform <= 400).float().mean().item() - 0.4) < 0.02
    # A band in the middle: 30% on 400..700, the rest uniform (30% of those in the band).
    band = training_steps(20000, 1000, 0.3, 700, torch.Generator().manual_seed(0), low_min=400)
    assert int(band.min()) >= 1 and int(band.max()) <= 1000
    assert abs(((band >= 400) & (band <= 700)).float().mean().item() - (0.3 + 0.7 * 0.301)) < 0.02


def test_sap_stage_on_a_models_reconstructions_resumes_exactly(tmp_path, tiny_model):
    network_config = tmp_path / "network.json"
    network_config.write_text(json.dumps(SMALL_SAP_NETWORK))
    whole = check_interrupted_then_resumed_equals_uninterrupted(
        "sap", tmp_path, *SAP_OPTIONS, "--network-config", str(network_config), "--model", str(tiny_model))
    losses = [entry["loss"] for entry in logged_steps(whole) if "loss" in entry]
    assert len(losses) == 4 and np.isfinite(losses).all()
