"""Tests of the official-checkpoint conversion.

The official state dicts are made here, key by key, from the release's naming scheme (PVCNN
modules in nn.Sequential / ModuleList, `voxel_layers.0/1/4/5/6`, `mlps.0.layers.N`, AdaGN
`norm`/`emd`, 1x1 Conv2d layers in the z0 prior); for `paper` their counts and sizes equal the
released files (867 / 56 / 406 tensors). The forward functions below compute what the released
modules compute, written directly against that official layout, so converted weights are
checked against the official arithmetic, not against our own modules.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from backend.checkpoint import load_model
from backend.config import get_config
from backend.convert_lion import (convert_checkpoint, convert_state_dicts, official_key_to_ours,
                                  split_official_checkpoint)
from backend.models import LionModel
from kernels import ops
from tests.backend.test_models import NUM_POINTS, micro_config, shapes

# ---------------------------------------------------------------- official layout (shapes)


def _norm(layout, prefix, channels, style_dim):
    if style_dim:
        layout.update({f"{prefix}.norm.weight": (channels,), f"{prefix}.norm.bias": (channels,),
                       f"{prefix}.emd.weight": (2 * channels, style_dim), f"{prefix}.emd.bias": (2 * channels,)})
    else:
        layout.update({f"{prefix}.weight": (channels,), f"{prefix}.bias": (channels,)})


def _shared_mlp(layout, prefix, in_channels, channels, kernel, style_dim):
    for index, out_channels in enumerate(channels):
        layout[f"{prefix}.layers.{3 * index}.weight"] = (out_channels, in_channels, *kernel)
        layout[f"{prefix}.layers.{3 * index}.bias"] = (out_channels,)
        _norm(layout, f"{prefix}.layers.{3 * index + 1}", out_channels, style_dim)
        in_channels = out_channels


def _pvconv(layout, prefix, in_channels, out_channels, style_dim, attention_hidden):
    layout[f"{prefix}.voxel_layers.0.weight"] = (out_channels, in_channels, 3, 3, 3)
    layout[f"{prefix}.voxel_layers.0.bias"] = (out_channels,)
    _norm(layout, f"{prefix}.voxel_layers.1", out_channels, style_dim)
    layout[f"{prefix}.voxel_layers.4.weight"] = (out_channels, out_channels, 3, 3, 3)
    layout[f"{prefix}.voxel_layers.4.bias"] = (out_channels,)
    _norm(layout, f"{prefix}.voxel_layers.5", out_channels, style_dim)
    layout[f"{prefix}.voxel_layers.6.fc.0.weight"] = (out_channels // 8, out_channels)
    layout[f"{prefix}.voxel_layers.6.fc.2.weight"] = (out_channels, out_channels // 8)
    if attention_hidden:
        _attention(layout, f"{prefix}.attn", out_channels, attention_hidden)
    _shared_mlp(layout, f"{prefix}.point_features", in_channels, [out_channels], (1,), style_dim)


def _attention(layout, prefix, channels, hidden):
    layout[f"{prefix}.to_qkv.weight"] = (3 * hidden, channels, 1, 1)
    layout[f"{prefix}.to_out.weight"] = (channels, hidden, 1, 1)
    layout[f"{prefix}.to_out.bias"] = (channels,)


def _sa_stage(layout, prefix, stage, in_channels, style_dim, attention_hidden):
    """Returns the stage's output channels. A stage without PVConv is the grouping module itself."""
    grouping = f"{prefix}.mlps.0"
    if stage.pvconv_layers:
        for k in range(stage.pvconv_layers):
            _pvconv(layout, f"{prefix}.{k}", in_channels if k == 0 else stage.pvconv_channels,
                    stage.pvconv_channels, style_dim, attention_hidden if stage.attention and k == 0 else 0)
        in_channels = stage.pvconv_channels
        grouping = f"{prefix}.{stage.pvconv_layers}.mlps.0"
    _shared_mlp(layout, grouping, in_channels + 3, stage.mlp_channels, (1, 1), style_dim)
    return stage.mlp_channels[-1]


def _unet(layout, prefix, unet, extra, out_channels, style_dim, time_dim):
    channels, skips = 3 + extra, []
    head_hidden = unet.attention_heads * unet.attention_head_channels
    for i, stage in enumerate(unet.down):
        skips.append(channels)
        channels = _sa_stage(layout, f"{prefix}sa_layers.{i}", stage, channels + (time_dim if i else 0),
                             style_dim, head_hidden)
    skips[0] = extra
    _attention(layout, f"{prefix}global_att", channels, unet.global_attention_heads * unet.attention_head_channels)
    for j, stage in enumerate(unet.up):
        _shared_mlp(layout, f"{prefix}fp_layers.{j}.0.mlp", channels + skips[-1 - j] + time_dim,
                    stage.mlp_channels, (1,), style_dim)
        channels = stage.mlp_channels[-1]
        for k in range(stage.pvconv_layers):
            _pvconv(layout, f"{prefix}fp_layers.{j}.{k + 1}", channels, stage.pvconv_channels, style_dim, 0)
            channels = stage.pvconv_channels
    _shared_mlp(layout, f"{prefix}classifier.0", channels, [unet.head_channels], (1,), style_dim)
    layout[f"{prefix}classifier.2.weight"] = (out_channels, unet.head_channels, 1)
    layout[f"{prefix}classifier.2.bias"] = (out_channels,)


def official_layout(config):
    """{part: {key: shape}} of the release's three state dicts for the architecture `config`."""
    vae, dz, dh = config.vae, config.vae.shape_latent_dim, config.vae.point_feature_dim
    vae_layout = {}
    channels = 3
    for i, stage in enumerate(vae.shape_latent_encoder.stages):
        channels = _sa_stage(vae_layout, f"style_encoder.layers.{i}", stage, channels, 0, 4 * 32)
    vae_layout["style_encoder.mlp.weight"] = (2 * dz, channels)
    vae_layout["style_encoder.mlp.bias"] = (2 * dz,)
    _unet(vae_layout, "encoder.layers.", vae.latent_point_encoder, 0, 2 * (3 + dh), dz, 0)
    _unet(vae_layout, "decoder.layers.", vae.decoder, dh, 3, dz, 0)

    prior, hidden = config.shape_prior, config.shape_prior.hidden_channels
    global_layout = {
        "temb_layer.0.weight": (prior.time_hidden_channels, prior.time_embedding_dim, 1, 1),
        "temb_layer.0.bias": (prior.time_hidden_channels,),
        "temb_layer.1.weight": (hidden, prior.time_hidden_channels, 1, 1), "temb_layer.1.bias": (hidden,),
        "input_layer.weight": (hidden, dz, 1, 1), "input_layer.bias": (hidden,),
        "output_layer.weight": (dz, hidden, 1, 1), "output_layer.bias": (dz,),
    }
    for i in range(prior.num_blocks):
        for conv in ("conv1", "conv2"):
            global_layout[f"all_modules.{i}.{conv}.weight"] = (hidden, hidden, 1, 1)
            global_layout[f"all_modules.{i}.{conv}.bias"] = (hidden,)
        global_layout[f"all_modules.{i}.SE.fc.0.weight"] = (hidden // 8, hidden, 1, 1)
        global_layout[f"all_modules.{i}.SE.fc.2.weight"] = (hidden, hidden // 8, 1, 1)

    time_dim = config.point_prior.time_embedding_dim
    local_layout = {"embedf.0.weight": (time_dim, time_dim), "embedf.0.bias": (time_dim,),
                    "embedf.2.weight": (time_dim, time_dim), "embedf.2.bias": (time_dim,)}
    _unet(local_layout, "", config.point_prior.unet, dh, 3 + dh, dz, time_dim)
    return {"vae": vae_layout, "global_prior": global_layout, "local_prior": local_layout}


def random_official_state(config, seed=0):
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for part, layout in official_layout(config).items():
        state[part] = {}
        for key, shape in layout.items():
            fan_in = math.prod(shape[1:]) if len(shape) > 1 else 4
            state[part][key] = torch.randn(shape, generator=generator) / math.sqrt(fan_in)
    return state


# ---------------------------------------------------------------- official arithmetic


def _conv1x1(x, weight, bias=None):
    out = torch.einsum("oi,bi...->bo...", weight.reshape(weight.shape[0], -1), x)
    return out if bias is None else out + bias.view(-1, *([1] * (x.dim() - 2)))


def _off_norm(sd, p, x, style):
    if f"{p}.emd.weight" in sd:
        factor, shift = F.linear(style, sd[f"{p}.emd.weight"], sd[f"{p}.emd.bias"]).chunk(2, dim=1)
        view = (x.shape[0], -1) + (1,) * (x.dim() - 2)
        return F.group_norm(x, 8, sd[f"{p}.norm.weight"], sd[f"{p}.norm.bias"]) * factor.view(view) + shift.view(view)
    return F.group_norm(x, 8, sd[f"{p}.weight"], sd[f"{p}.bias"])


def _off_mlp(sd, p, x, style):
    index = 0
    while f"{p}.layers.{index}.weight" in sd:
        x = _conv1x1(x, sd[f"{p}.layers.{index}.weight"], sd[f"{p}.layers.{index}.bias"])
        x = F.silu(_off_norm(sd, f"{p}.layers.{index + 1}", x, style))
        index += 3
    return x


def _off_attention(sd, p, x, head_channels):
    qkv = _conv1x1(x, sd[f"{p}.to_qkv.weight"])
    b, n = x.shape[0], x.shape[-1]
    q, k, v = qkv.view(b, 3, -1, head_channels, n).unbind(1)  # '(qkv heads c)' channel order
    out = torch.einsum("bhde,bhdn->bhen", torch.einsum("bhdn,bhen->bhde", k.softmax(-1), v), q)
    return _conv1x1(out.reshape(b, -1, n), sd[f"{p}.to_out.weight"], sd[f"{p}.to_out.bias"])


def _off_pvconv(sd, p, features, coords, style, resolution, head_channels):
    vox = ops.voxel_coords(coords, resolution)
    grid = ops.avg_voxelize(features, torch.round(vox).to(torch.int32), resolution)
    grid = F.conv3d(grid, sd[f"{p}.voxel_layers.0.weight"], sd[f"{p}.voxel_layers.0.bias"], padding=1)
    grid = F.silu(_off_norm(sd, f"{p}.voxel_layers.1", grid, style))
    grid = F.conv3d(grid, sd[f"{p}.voxel_layers.4.weight"], sd[f"{p}.voxel_layers.4.bias"], padding=1)
    grid = _off_norm(sd, f"{p}.voxel_layers.5", grid, style)
    gate = F.relu(F.linear(grid.mean((2, 3, 4)), sd[f"{p}.voxel_layers.6.fc.0.weight"]))
    grid = grid * torch.sigmoid(F.linear(gate, sd[f"{p}.voxel_layers.6.fc.2.weight"]))[:, :, None, None, None]
    out = ops.trilinear_devoxelize(grid, vox, False) + _off_mlp(sd, f"{p}.point_features", features, style)
    if f"{p}.attn.to_qkv.weight" in sd:
        out = _off_attention(sd, f"{p}.attn", out, head_channels)
    return out


def _off_sa_stage(sd, p, stage, features, coords, style, head_channels):
    for k in range(stage.pvconv_layers):
        features = _off_pvconv(sd, f"{p}.{k}", features, coords, style, stage.voxel_resolution, head_channels)
    grouping = f"{p}.{stage.pvconv_layers}.mlps.0" if stage.pvconv_layers else f"{p}.mlps.0"
    centers = coords.gather(2, ops.furthest_point_sample(coords, stage.num_centers)[:, None].expand(-1, 3, -1))
    idx = ops.ball_query(centers, coords, stage.radius, stage.num_neighbors)
    grouped = torch.cat([ops.grouping(coords, idx) - centers[..., None], ops.grouping(features, idx)], 1)
    return _off_mlp(sd, grouping, grouped, style).max(-1).values, centers


def official_unet(sd, prefix, unet, inputs, style, temb=None):
    sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    features, coords = inputs, inputs[:, :3]
    skip_features, skip_coords = [], []
    for i, stage in enumerate(unet.down):
        skip_features.append(features)
        skip_coords.append(coords)
        if i > 0 and temb is not None:
            features = torch.cat([features, temb[:, :, None].expand(-1, -1, features.shape[-1])], 1)
        features, coords = _off_sa_stage(sd, f"sa_layers.{i}", stage, features, coords, style,
                                         unet.attention_head_channels)
    skip_features[0] = inputs[:, 3:]
    features = _off_attention(sd, "global_att", features, unet.attention_head_channels)
    for j, stage in enumerate(unet.up):
        if temb is not None:
            features = torch.cat([features, temb[:, :, None].expand(-1, -1, features.shape[-1])], 1)
        points = skip_coords[-1 - j]
        features = torch.cat([ops.three_nn_interpolate(points, coords, features), skip_features[-1 - j]], 1)
        features = _off_mlp(sd, f"fp_layers.{j}.0.mlp", features, style)
        for k in range(stage.pvconv_layers):
            features = _off_pvconv(sd, f"fp_layers.{j}.{k + 1}", features, points, style, stage.voxel_resolution,
                                   unet.attention_head_channels)
        coords = points
    features = _off_mlp(sd, "classifier.0", features, style)
    return _conv1x1(features, sd["classifier.2.weight"], sd["classifier.2.bias"])


def _official_time_embedding(step_numbers, dim):
    half = dim // 2
    frequencies = torch.exp(torch.arange(half, dtype=torch.float64) * -(math.log(10000) / (half - 1))).float()
    angles = step_numbers[:, None] * frequencies[None]
    return torch.cat([angles.sin(), angles.cos()], 1)


def official_global_prior(sd, z, step_numbers, dim):
    temb = _conv1x1(_official_time_embedding(step_numbers, dim), sd["temb_layer.0.weight"], sd["temb_layer.0.bias"])
    temb = _conv1x1(temb, sd["temb_layer.1.weight"], sd["temb_layer.1.bias"])
    x = _conv1x1(z, sd["input_layer.weight"], sd["input_layer.bias"])
    i = 0
    while f"all_modules.{i}.conv1.weight" in sd:
        p = f"all_modules.{i}"
        out = F.relu(_conv1x1(x + temb, sd[f"{p}.conv1.weight"], sd[f"{p}.conv1.bias"]))
        out = F.relu(_conv1x1(out, sd[f"{p}.conv2.weight"], sd[f"{p}.conv2.bias"]))
        gate = torch.sigmoid(_conv1x1(F.relu(_conv1x1(out, sd[f"{p}.SE.fc.0.weight"])), sd[f"{p}.SE.fc.2.weight"]))
        x = x + out * gate
        i += 1
    return _conv1x1(x, sd["output_layer.weight"], sd["output_layer.bias"])


# ---------------------------------------------------------------- tests


def test_paper_layout_has_the_released_counts_and_sizes():
    layout = official_layout(get_config("paper"))
    counts = {part: len(keys) for part, keys in layout.items()}
    sizes = {part: sum(math.prod(shape) for shape in keys.values()) for part, keys in layout.items()}
    assert counts == {"vae": 867, "global_prior": 56, "local_prior": 406}
    assert sizes == {"vae": 22_402_731, "global_prior": 77_173_376, "local_prior": 11_420_740}


def test_every_official_tensor_lands_once_and_unchanged():
    # Distinct values everywhere: a swapped or transposed tensor cannot go unnoticed.
    config = get_config("paper")
    layout = official_layout(config)
    total = sum(math.prod(shape) for keys in layout.values() for shape in keys.values())
    values = torch.arange(total, dtype=torch.float32)
    official, start = {}, 0
    for part, keys in layout.items():
        official[part] = {}
        for key, shape in keys.items():
            official[part][key] = values[start:start + math.prod(shape)].view(shape)
            start += math.prod(shape)
    converted = convert_state_dicts(official, config)
    with torch.device("meta"):
        target = LionModel(config).state_dict()
    assert sorted(converted) == sorted(target)
    for part, keys in official.items():
        for key, value in keys.items():
            ours = official_key_to_ours(part, key)
            assert converted[ours].shape == target[ours].shape
            assert torch.equal(converted[ours].flatten(), value.flatten()), (part, key)


def test_converted_weights_compute_the_official_functions():
    config = micro_config()
    official = random_official_state(config, seed=3)
    model = LionModel(config).eval()
    model.load_state_dict(convert_state_dicts(official, config))
    vae, unet_e, unet_d = official["vae"], config.vae.latent_point_encoder, config.vae.decoder
    points = shapes(3, seed=5)
    z0 = torch.randn(3, 128, generator=torch.Generator().manual_seed(6))
    h0 = torch.cat([points, torch.randn(3, NUM_POINTS, 1)], dim=-1)
    t = torch.tensor([0, 499, 999])
    with torch.no_grad():
        features, coords = points.transpose(1, 2), points.transpose(1, 2)
        for i, stage in enumerate(config.vae.shape_latent_encoder.stages):
            features, coords = _off_sa_stage(vae, f"style_encoder.layers.{i}", stage, features, coords, None, 32)
        posterior = F.linear(features.max(-1).values, vae["style_encoder.mlp.weight"], vae["style_encoder.mlp.bias"])
        mean, log_sigma = model.vae.shape_latent_encoder(points)
        assert torch.allclose(torch.cat([mean, log_sigma], 1), posterior, atol=1e-5, rtol=1e-4)

        out = official_unet(vae, "encoder.layers.", unet_e, points.transpose(1, 2), z0).transpose(1, 2)
        expected_mean = torch.cat([0.01 * out[..., :3] + points, out[..., 6:7]], -1)
        expected_log_sigma = torch.cat([out[..., 3:6], out[..., 7:8]], -1) - 6.0
        mean, log_sigma = model.vae.latent_point_encoder(points, z0)
        assert torch.allclose(mean, expected_mean, atol=1e-5, rtol=1e-4)
        assert torch.allclose(log_sigma, expected_log_sigma, atol=1e-5, rtol=1e-4)

        out = official_unet(vae, "decoder.layers.", unet_d, h0.transpose(1, 2), z0).transpose(1, 2)
        assert torch.allclose(model.vae.decode(z0, h0), 0.01 * out + h0[..., :3], atol=1e-5, rtol=1e-4)

        # The release's priors take 1-based step numbers; ours take 0-based indices.
        expected = official_global_prior(official["global_prior"], z0, (t + 1).float(),
                                         config.shape_prior.time_embedding_dim)
        assert torch.allclose(model.shape_prior(z0, t), expected, atol=1e-4, rtol=1e-4)

        local = official["local_prior"]
        temb = _official_time_embedding((t + 1).float(), config.point_prior.time_embedding_dim)
        temb = F.linear(F.leaky_relu(F.linear(temb, local["embedf.0.weight"], local["embedf.0.bias"]), 0.1),
                        local["embedf.2.weight"], local["embedf.2.bias"])
        expected = official_unet(local, "", config.point_prior.unet, h0.transpose(1, 2), z0, temb).transpose(1, 2)
        assert torch.allclose(model.point_prior(h0, t, z0), expected, atol=1e-5, rtol=1e-4)


def test_mixed_score_release_converts_with_its_logits_and_samples(tmp_path):
    # A release trained with the mixed score: both priors carry a mixing_logit, h0's flattened
    # point-major (point n, channel c at n*4 + c).
    config = micro_config()
    official = random_official_state(config, seed=8)
    z_logit = torch.linspace(-6, 2, 128).reshape(1, 128, 1, 1)
    h_logit = torch.linspace(-5, 3, NUM_POINTS * 4).reshape(1, NUM_POINTS * 4, 1, 1)
    official["global_prior"]["mixing_logit"] = z_logit
    official["local_prior"]["mixing_logit"] = h_logit
    with torch.device("meta"):
        plain = LionModel(config).state_dict()
    assert "shape_prior.mixing_logit" not in plain
    from backend.convert_lion import config_for

    mixed_config = config_for(official, config)
    assert mixed_config.diffusion.prediction == "mixed"
    model = LionModel(mixed_config).eval()
    model.load_state_dict(convert_state_dicts(official, config))
    assert torch.equal(model.shape_prior.mixing_logit, z_logit.flatten())
    assert model.point_prior.mixing_logit[5, 2] == h_logit.flatten()[5 * 4 + 2]
    # The mixed noise prediction is what the samplers see.
    z_t, index = torch.randn(2, 128), torch.tensor([10, 900])
    weight = torch.sigmoid(z_logit.flatten())
    gaussian = (1 - model.schedule.alphas_cumprod[index + 1]).sqrt().float()[:, None] * z_t
    with torch.no_grad():
        expected = (1 - weight) * gaussian + weight * model.shape_prior(z_t, index)
        torch.testing.assert_close(model.shape_eps_model()(z_t, index), expected)
        from backend.pipelines import SamplerSettings, sample

        points = sample(model, 2, torch.Generator().manual_seed(0), SamplerSettings(steps=3))
    assert points.shape == (2, NUM_POINTS, 3) and torch.isfinite(points).all()
    # The logits survive a checkpoint round trip.
    from backend.checkpoint import save_model

    save_model(tmp_path / "mixed.safetensors", model)
    loaded, _ = load_model(tmp_path / "mixed.safetensors")
    assert loaded.config.diffusion.prediction == "mixed"
    assert torch.equal(loaded.point_prior.mixing_logit, model.point_prior.mixing_logit)


def test_release_file_converts_through_the_command(tmp_path):
    # The release layout: VAE and a ModuleList of both priors, saved from DataParallel.
    config = get_config("paper")
    layout = official_layout(config)
    release = {
        "vae_state_dict": {f"module.{k}": torch.zeros(s) for k, s in layout["vae"].items()},
        "dae_state_dict": {**{f"0.{k}": torch.zeros(s) for k, s in layout["global_prior"].items()},
                           **{f"1.{k}": torch.zeros(s) for k, s in layout["local_prior"].items()}},
        "epoch": 7999,
    }
    official_path, out_path = tmp_path / "lion_chair.pt", tmp_path / "chair.safetensors"
    torch.save(release, official_path)
    del release
    from backend.__main__ import main

    assert main(["convert-lion", str(official_path), str(out_path), "--dataset", "shapenet-chair",
                 "--mean", "0", "0.1", "0", "--std", "0.2"]) == 0
    model, metadata = load_model(out_path)
    assert metadata["dataset"] == "shapenet-chair" and model.config.name == "paper"
    assert model.normalization.to_json()["mean"] == [0.0, 0.1, 0.0]
    assert all(not value.any() for value in model.state_dict().values())


def test_unexpected_official_content_is_rejected(tmp_path):
    config = micro_config()
    official = random_official_state(config)
    with pytest.raises(ValueError, match="not part of the released LION architecture"):
        official_key_to_ours("local_prior", "clip_proj.weight")
    one_sided = {part: dict(keys) for part, keys in official.items()}
    one_sided["local_prior"]["mixing_logit"] = torch.zeros(1, NUM_POINTS * 4, 1, 1)
    with pytest.raises(ValueError, match="only one of the official priors"):
        convert_state_dicts(one_sided, config)
    broken = {part: dict(keys) for part, keys in official.items()}
    broken["global_prior"]["input_layer.weight"] = torch.zeros(3, 3, 1, 1)
    with pytest.raises(ValueError, match="input_layer.weight"):
        convert_state_dicts(broken, config)
    broken = {part: dict(keys) for part, keys in official.items()}
    del broken["vae"]["style_encoder.mlp.bias"]
    with pytest.raises(ValueError, match="lacks 1 tensors"):
        convert_state_dicts(broken, config)
    with pytest.raises(ValueError, match="vae_state_dict"):
        split_official_checkpoint({"model": {}})
    not_weights = tmp_path / "pickle.pt"
    torch.save({"vae_state_dict": {}, "dae_state_dict": {}, "cfg": _Opaque()}, not_weights)
    with pytest.raises(ValueError, match="weights-only"):
        convert_checkpoint(not_weights, tmp_path / "out.safetensors")


class _Opaque:
    """A pickled Python object that a weights-only load must refuse."""
