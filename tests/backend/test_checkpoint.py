"""Tests of checkpoints: save/load round trip of a whole model, metadata, config in the file,
and clear errors for files that are not our checkpoints."""
import json
import os

import pytest
import torch

from backend.checkpoint import (load_checkpoint, load_model, read_checkpoint_info, save_checkpoint, save_half_precision,
                                save_model)
from backend.config import LionConfig, get_config
from backend.data.normalization import GlobalNormalization
from backend.models import LionModel
from tests.backend.test_models import NUM_POINTS, micro_config, shapes


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(5)
    return LionModel(micro_config(), GlobalNormalization([0.1, -0.2, 0.3], [0.5])).eval()


def test_model_round_trip_gives_identical_outputs(model, tmp_path):
    path = tmp_path / "model.safetensors"
    save_model(path, model, dataset="procedural-chairs", step=1234, extra={"note": "test"})
    loaded, metadata = load_model(path)
    assert metadata["dataset"] == "procedural-chairs" and metadata["step"] == 1234 and metadata["note"] == "test"
    assert loaded.config == model.config and not loaded.training
    assert loaded.normalization.to_json() == model.normalization.to_json()
    loaded_state = loaded.state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(loaded_state[name], value), name
    assert all(p.requires_grad for p in loaded.parameters())
    points = shapes(2)
    z = torch.randn(2, 128)
    h = torch.cat([points, torch.randn(2, NUM_POINTS, 1)], dim=-1)
    with torch.no_grad():
        assert torch.equal(loaded.vae.decode(z, h), model.vae.decode(z, h))
        assert torch.equal(loaded.shape_prior(z, torch.tensor(3)), model.shape_prior(z, torch.tensor(3)))
        assert torch.equal(loaded.point_prior(h, torch.tensor(3), z), model.point_prior(h, torch.tensor(3), z))
    assert os.listdir(tmp_path) == ["model.safetensors"]


def test_half_precision_copy_loads_as_float32_with_the_rounded_weights(model, tmp_path):
    save_model(tmp_path / "full.safetensors", model, step=7)
    save_half_precision(tmp_path / "full.safetensors", tmp_path / "half.safetensors")
    stored = load_checkpoint(tmp_path / "half.safetensors").tensors
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    half, metadata = load_model(tmp_path / "half.safetensors")
    assert metadata["stored_dtype"] == "float16" and metadata["step"] == 7
    assert os.path.getsize(tmp_path / "half.safetensors") < 0.6 * os.path.getsize(tmp_path / "full.safetensors")
    for name, value in half.state_dict().items():
        original = model.state_dict()[name]
        assert value.dtype == original.dtype, name
        if original.is_floating_point():
            assert torch.equal(value, original.half().float()), name
    z = torch.randn(2, 128)
    h = torch.cat([shapes(2), torch.randn(2, NUM_POINTS, 1)], dim=-1)
    with torch.no_grad():
        assert torch.allclose(half.vae.decode(z, h), model.vae.decode(z, h), atol=5e-3)


def test_half_precision_refuses_weights_beyond_float16(model, tmp_path):
    tensors = {name: value.clone() for name, value in model.state_dict().items()}
    first = next(iter(tensors))
    tensors[first].view(-1)[0] = 1e6
    save_checkpoint(tmp_path / "big.safetensors", tensors, model.config, {})
    with pytest.raises(ValueError, match="overflow float16"):
        save_half_precision(tmp_path / "big.safetensors", tmp_path / "half.safetensors")
    assert not os.path.exists(tmp_path / "half.safetensors")


def test_model_without_normalization(tmp_path):
    model = LionModel(micro_config())
    save_model(tmp_path / "m.safetensors", model)
    loaded, metadata = load_model(tmp_path / "m.safetensors")
    assert loaded.normalization is None and metadata["normalization"] is None and metadata["step"] is None


def test_low_level_round_trip_and_info(tmp_path):
    config = get_config("tiny")
    tensors = {"a": torch.arange(6, dtype=torch.float32).view(2, 3), "b": torch.tensor([1, 2], dtype=torch.int64)}
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, tensors, config, {"step": 7})
    checkpoint = load_checkpoint(path)
    assert checkpoint.config == config and checkpoint.metadata == {"step": 7}
    assert torch.equal(checkpoint.tensors["a"], tensors["a"]) and checkpoint.tensors["b"].dtype == torch.int64
    assert read_checkpoint_info(path) == (config, {"step": 7})


def test_config_json_round_trip_and_errors():
    for name in ("paper", "tiny"):
        config = get_config(name)
        assert LionConfig.from_json(config.to_json()) == config
    data = get_config("tiny").to_dict()
    data["vae"]["colour"] = 1
    with pytest.raises(ValueError, match=r"config\.vae has unknown keys \['colour'\]"):
        LionConfig.from_dict(data)
    data = get_config("tiny").to_dict()
    data["vae"]["decoder"]["up"][0]["pvconv_channels"] = 12
    with pytest.raises(ValueError, match=r"vae\.decoder\.up\[0\]\.pvconv_channels"):
        LionConfig.from_dict(data)
    with pytest.raises(ValueError, match="name must be one of"):
        get_config("huge")


def test_bad_files_are_rejected(tmp_path, model):
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a safetensors checkpoint"):
        load_model(text)
    with pytest.raises(ValueError, match="does not exist"):
        load_model(tmp_path / "missing.safetensors")
    other = tmp_path / "other.safetensors"
    save_checkpoint(other, {"x": torch.zeros(1)}, micro_config())
    with pytest.raises(ValueError, match="does not match its config"):
        load_model(other)
    with pytest.raises(ValueError, match="JSON-serializable"):
        save_checkpoint(tmp_path / "x.safetensors", {"x": torch.zeros(1)}, micro_config(), {"bad": object()})
    with pytest.raises(ValueError, match="extra must not contain"):
        save_model(tmp_path / "y.safetensors", model, extra={"step": 3})


def test_header_is_plain_json(tmp_path, model):
    path = tmp_path / "model.safetensors"
    save_model(path, model, step=1)
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))["__metadata__"]
    assert header["format"] == "lion-blender-checkpoint"
    assert json.loads(header["config"])["name"] == "tiny"
