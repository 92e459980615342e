"""Tests of LION's networks: shapes at odd batch sizes, the encode -> decode round trip,
gradients to every parameter, the time-step convention and the `paper` parameter counts."""
import dataclasses
import json
import math

import pytest
import torch

from backend.config import get_config
from backend.models import LionModel
from backend.models.layers import (AdaptiveGroupNorm, GroupNorm, LinearAttention, PointwiseMLP, SqueezeExcite,
                                   sinusoidal_embedding)
from backend.models.pvcnn import FeaturePropagation, PVCNNUNet, PVConv, SetAbstraction
from backend.models.vae import LatentPointDecoder, LatentPointEncoder, ShapeLatentEncoder

NUM_POINTS = 96


def micro_config():
    """`tiny` with few points and centers, so that a forward pass takes milliseconds."""
    config = get_config("tiny")
    config.vae.num_points = NUM_POINTS
    unets = (config.vae.latent_point_encoder, config.vae.decoder, config.point_prior.unet)
    for unet in unets:
        for stage, centers in zip(unet.down, (48, 24, 12, 6)):
            stage.num_centers = centers
            stage.num_neighbors = 8
    for stage, centers in zip(config.vae.shape_latent_encoder.stages, (48, 16)):
        stage.num_centers = centers
    return config


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return LionModel(micro_config()).eval()


def shapes(batch, count=NUM_POINTS, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, count, 3, generator=generator) * 1.6 - 0.8


@pytest.mark.parametrize("batch", [1, 3])
def test_layer_shapes(batch):
    condition = torch.randn(batch, 16)
    x1, x2, x3 = torch.randn(batch, 16, 7), torch.randn(batch, 16, 5, 3), torch.randn(batch, 16, 4, 4, 4)
    assert AdaptiveGroupNorm(16, 16)(x3, condition).shape == x3.shape
    assert GroupNorm(16)(x1, condition).shape == x1.shape
    assert PointwiseMLP(16, [8, 24], 1, 16)(x1, condition).shape == (batch, 24, 7)
    assert PointwiseMLP(16, [8, 24], 2, 0)(x2).shape == (batch, 24, 5, 3)
    assert SqueezeExcite(16)(x3).shape == x3.shape
    assert SqueezeExcite(16)(x1[:, :, 0]).shape == (batch, 16)
    assert LinearAttention(16, heads=3, head_channels=5)(x1).shape == x1.shape
    assert sinusoidal_embedding(torch.arange(batch), 10).shape == (batch, 10)


@pytest.mark.parametrize("batch", [1, 3])
def test_pvcnn_block_shapes(batch, model):
    config = model.config.vae.latent_point_encoder
    coords = shapes(batch).transpose(1, 2)
    condition = torch.randn(batch, 128)
    features = torch.randn(batch, 5, NUM_POINTS)
    pvconv = PVConv(5, 16, resolution=6, condition_dim=128, attention_heads=2, attention_head_channels=8)
    assert pvconv(features, coords, condition).shape == (batch, 16, NUM_POINTS)
    stage = SetAbstraction(5, config.down[0], condition_dim=128)
    out, centers = stage(features, coords, condition)
    assert out.shape == (batch, config.down[0].mlp_channels[-1], 48) and centers.shape == (batch, 3, 48)
    plain = SetAbstraction(5, config.down[3], condition_dim=0)
    out, centers = plain(features, coords)
    assert out.shape == (batch, 64, 6) and centers.shape == (batch, 3, 6)
    up = FeaturePropagation(64 + 5, config.up[3], condition_dim=128)
    assert up(coords, centers, torch.randn(batch, 64, 6), features, condition).shape == (batch, 32, NUM_POINTS)
    unet = PVCNNUNet(config, extra_channels=2, out_channels=7, condition_dim=128, time_channels=12)
    inputs = torch.cat([coords, torch.randn(batch, 2, NUM_POINTS)], dim=1)
    assert unet(inputs, condition, torch.randn(batch, 12)).shape == (batch, 7, NUM_POINTS)


@pytest.mark.parametrize("batch", [1, 3])
def test_vae_and_prior_shapes(batch, model):
    points = shapes(batch)
    with torch.no_grad():
        mean, log_sigma = model.vae.shape_latent_encoder(points)
        assert mean.shape == log_sigma.shape == (batch, 128)
        encoding = model.vae.encode(points)
        assert encoding.shape_latent.shape == (batch, 128)
        for tensor in (encoding.latent_points_mean, encoding.latent_points_log_sigma, encoding.latent_points):
            assert tensor.shape == (batch, NUM_POINTS, 4)
        assert model.vae.decode(encoding.shape_latent, encoding.latent_points).shape == (batch, NUM_POINTS, 3)
        assert model.shape_prior(encoding.shape_latent, torch.arange(batch)).shape == (batch, 128)
        eps = model.point_prior(encoding.latent_points, torch.tensor(7), encoding.shape_latent)
        assert eps.shape == (batch, NUM_POINTS, 4)
    assert isinstance(model.vae.shape_latent_encoder, ShapeLatentEncoder)
    assert isinstance(model.vae.latent_point_encoder, LatentPointEncoder)
    assert isinstance(model.vae.decoder, LatentPointDecoder)


def test_encode_decode_round_trip_starts_near_identity(model):
    # Encoder and decoder both add 0.01 * network output to the points they get, and the
    # posterior starts narrow (log sigma offset 6), so a fresh VAE reconstructs closely.
    points = shapes(3, seed=1)
    with torch.no_grad():
        encoding = model.vae.encode(points, sample=False)
        reconstruction = model.vae.decode(encoding.shape_latent, encoding.latent_points)
        sampled = model.vae.encode(points, sample=True, generator=torch.Generator().manual_seed(4))
    assert torch.equal(encoding.shape_latent, encoding.shape_latent_mean)
    assert torch.equal(encoding.latent_points, encoding.latent_points_mean)
    assert (reconstruction - points).abs().max() < 0.2
    assert (encoding.latent_points_mean[..., :3] - points).abs().max() < 0.2
    assert encoding.latent_points_log_sigma.mean() < -4.0
    assert not torch.equal(sampled.latent_points, sampled.latent_points_mean)
    again = model.vae.encode(points, sample=True, generator=torch.Generator().manual_seed(4))
    assert torch.equal(sampled.latent_points, again.latent_points)


def test_latent_point_noise_widens_only_the_xyz_of_posterior_draws():
    config = micro_config()
    config.vae.latent_point_noise = 0.3
    torch.manual_seed(0)
    noisy = LionModel(config).eval()
    points = shapes(2, count=NUM_POINTS, seed=3)
    with torch.no_grad():
        encoding = noisy.vae.encode(points, sample=True, generator=torch.Generator().manual_seed(5))
        mean_only = noisy.vae.encode(points, sample=False)
        draws = torch.stack([noisy.vae.sample_latent_points(encoding.latent_points_mean, encoding.latent_points_log_sigma,
                                                            torch.Generator().manual_seed(seed)) for seed in range(200)])
    assert torch.equal(mean_only.latent_points, mean_only.latent_points_mean), "posterior means get no extra noise"
    sigma = encoding.latent_points_log_sigma.exp()
    expected = torch.cat([(sigma[..., :3].square() + 0.3 ** 2).sqrt(), sigma[..., 3:]], dim=-1)
    measured = (draws - encoding.latent_points_mean).std(dim=0)
    assert torch.allclose(measured.mean(dim=(0, 1)), expected.mean(dim=(0, 1)), rtol=0.05)
    assert (encoding.latent_points - encoding.latent_points_mean)[..., :3].std() > 0.25
    voxel_guided = LionModel(config, with_voxel_encoder=True).voxel_encoder
    again = voxel_guided.sample_latent_points(encoding.latent_points_mean, encoding.latent_points_log_sigma,
                                              torch.Generator().manual_seed(0))
    assert torch.equal(again, draws[0]), "the voxel-guide encoder draws as the VAE does"


def test_a_config_with_negative_latent_point_noise_is_refused():
    config = micro_config()
    config.vae.latent_point_noise = -0.1
    with pytest.raises(ValueError, match="latent_point_noise"):
        LionModel(config)


@pytest.mark.parametrize("shares", [[1.0], [0.5, -0.5], [0.0, 0.0], [float("nan"), 1.0], [True, 1.0], ["1", 1.0]])
def test_category_shares_that_are_no_distribution_are_refused(shares):
    config = micro_config()
    config.shape_prior.categories = ["chair", "table"]
    config.shape_prior.category_shares = shares
    with pytest.raises(ValueError, match="category_shares"):
        LionModel(config)


def test_gradient_reaches_every_parameter():
    torch.manual_seed(1)
    model = LionModel(micro_config()).train()
    points = shapes(2, seed=2)
    reconstruction, encoding = model.vae(points)
    loss = (reconstruction - points).abs().sum()
    loss = loss + encoding.shape_latent_log_sigma.sum() + encoding.latent_points_log_sigma.sum()
    t = torch.tensor([3, 900])
    loss = loss + model.shape_prior(encoding.shape_latent.detach(), t).square().sum()
    loss = loss + model.point_prior(encoding.latent_points.detach(), t, encoding.shape_latent.detach()).square().sum()
    loss.backward()
    without = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert without == []


def test_priors_take_zero_based_steps_as_scalar_or_batch(model):
    z = torch.randn(3, 128)
    h = torch.cat([shapes(3), torch.randn(3, NUM_POINTS, 1)], dim=-1)
    with torch.no_grad():
        assert torch.allclose(model.shape_prior(z, torch.tensor(5)), model.shape_prior(z, torch.full((3,), 5.0)))
        assert torch.allclose(model.point_prior(h, torch.tensor(5), z),
                              model.point_prior(h, torch.tensor([5, 5, 5]), z))
        assert not torch.allclose(model.shape_prior(z, torch.tensor(5)), model.shape_prior(z, torch.tensor(6)))
    with pytest.raises(ValueError, match="t must"):
        model.shape_prior(z, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="shape_latent"):
        model.point_prior(h, torch.tensor(1), z[:2])


def test_sinusoidal_embedding_closed_form():
    embedding = sinusoidal_embedding(torch.tensor([1.0, 1000.0]), 8)
    for row, t in enumerate((1.0, 1000.0)):
        for i in range(4):
            frequency = 10000 ** (-i / 3)
            assert embedding[row, i].item() == pytest.approx(math.sin(t * frequency), abs=1e-4)
            assert embedding[row, 4 + i].item() == pytest.approx(math.cos(t * frequency), abs=1e-4)


def test_linear_attention_matches_explicit_formula():
    torch.manual_seed(3)
    attention = LinearAttention(6, heads=2, head_channels=3)
    x = torch.randn(2, 6, 5)
    qkv = attention.to_qkv(x)
    expected = []
    for head in range(2):
        q, k, v = (qkv[:, part * 6 + head * 3: part * 6 + head * 3 + 3] for part in range(3))
        k = k.softmax(dim=-1)
        expected.append(torch.einsum("bdn,ben,bdm->bem", k, v, q))
    assert torch.allclose(attention(x), attention.to_out(torch.cat(expected, dim=1)), atol=1e-6)


def test_adaptive_group_norm_is_group_norm_for_zero_condition():
    norm = AdaptiveGroupNorm(16, 4)
    x = torch.randn(3, 16, 9)
    plain = torch.nn.functional.group_norm(x, 8, norm.norm.weight, norm.norm.bias)
    assert torch.allclose(norm(x, torch.zeros(3, 4)), plain, atol=1e-6)


def test_inputs_are_validated(model):
    with pytest.raises(ValueError, match="points"):
        model.vae.encode(torch.randn(2, NUM_POINTS, 4))
    with pytest.raises(ValueError, match="latent_points"):
        model.vae.decode(torch.randn(2, 128), torch.randn(2, NUM_POINTS, 3))
    with pytest.raises(ValueError, match="shape_latent"):
        model.vae.decode(torch.randn(3, 128), torch.randn(2, NUM_POINTS, 4))
    with pytest.raises(ValueError, match="shape_latent"):
        model.shape_prior(torch.randn(2, 64), torch.tensor(0))


def test_paper_parameter_counts_match_the_release():
    with torch.device("meta"):
        counts = LionModel(get_config("paper")).parameter_counts()
    # Exact sizes of the released state dicts (style_encoder, encoder, decoder, global and local prior).
    assert counts["shape_latent_encoder"] == 183_456
    assert counts["latent_point_encoder"] == 11_109_448
    assert counts["decoder"] == 11_109_827
    assert counts["vae"] == 22_402_731
    assert counts["shape_prior"] == 77_173_376
    assert counts["point_prior"] == 11_420_740
    for name, quoted in (("latent_point_encoder", 11.11e6), ("decoder", 11.11e6), ("vae", 22.40e6),
                         ("shape_prior", 77.17e6), ("point_prior", 11.42e6)):
        assert abs(counts[name] - quoted) / quoted < 0.005


def test_tiny_is_smaller_than_paper_with_the_same_structure():
    with torch.device("meta"):
        tiny, paper = LionModel(get_config("tiny")), LionModel(get_config("paper"))
    assert tiny.parameter_counts()["total"] < paper.parameter_counts()["total"] / 10
    strip = lambda module: sorted({name.split(".")[0] for name, _ in module.named_parameters()})
    assert strip(tiny) == strip(paper)


def test_info_command_prints_counts(capsys):
    from backend.__main__ import main

    assert main(["info", "--config", "paper"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["config"] == "paper" and record["parameters"]["shape_prior"] == 77_173_376


def test_model_rejects_a_non_config():
    with pytest.raises(ValueError, match="config"):
        LionModel(dataclasses.asdict(get_config("tiny")))


def test_point_voxel_layer_in_float32_stays_with_float64_on_every_kernel_path(kernel_path):
    # A voxel grid in channels-last layout sends Conv3d and GroupNorm down PyTorch's
    # channels-last CPU kernels, which drift from float64 by ~1e-4 relative on offset
    # features: what made converted official weights disagree with the official code.
    # A large first bias stands in for trained weights whose activations sit far from zero.
    torch.manual_seed(0)
    layer = PVConv(32, 32, resolution=8, dropout=0.0).eval()
    with torch.no_grad():
        layer.voxel_conv1.bias.fill_(30.0)
    coords = shapes(2, count=2048, seed=3).transpose(1, 2).contiguous()
    features = torch.randn(2, 32, 2048, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        single = layer(features, coords)
        double = layer.double()(features.double(), coords.double())
    relative = (single.double() - double).abs().max() / double.abs().max()
    assert relative < 1e-5, f"float32 drifts {float(relative):.2e} from float64 ({kernel_path})"
