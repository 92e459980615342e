"""Convert checkpoints of the public LION release (nv-tlabs/LION) into this project's format.

A released checkpoint carries three state dicts: the VAE (`vae_state_dict`), and the two
priors (`dae_state_dict`, a ModuleList whose entry 0 is the z0 prior and entry 1 the h0 prior).
Every official tensor maps to exactly one of ours by renaming; 1x1 convolutions that we hold
as linear layers (and point-wise Conv2d layers we hold as Conv1d) are reshaped, never changed
otherwise. The mapping, part by part:

  official VAE                                   ours (LionModel)
  style_encoder.layers.I.K.<pvconv>              vae.shape_latent_encoder.stages.I.pvconvs.K.<pvconv>
  style_encoder.layers.I.K.mlps.0.<mlp>          vae.shape_latent_encoder.stages.I.group_mlp.<mlp>
  style_encoder.mlp                              vae.shape_latent_encoder.to_posterior
  encoder.layers.<unet> / decoder.layers.<unet>  vae.latent_point_encoder.unet.<unet> / vae.decoder.unet.<unet>
  official z0 prior                              shape_prior
  temb_layer.0 / temb_layer.1                    time_in / time_out
  input_layer / output_layer                     input_proj / output_proj
  all_modules.I.conv1 / conv2 / SE.fc.0 / SE.fc.2  blocks.I.linear1 / linear2 / squeeze_excite.reduce / .expand
  official h0 prior                              point_prior
  embedf.0 / embedf.2                            time_mlp.0 / time_mlp.2
  <unet>                                         unet.<unet>

  <unet>:   sa_layers.I.K.<pvconv> -> down.I.pvconvs.K.<pvconv>;  sa_layers.I[.K].mlps.0.<mlp> ->
            down.I.group_mlp.<mlp>;  global_att -> global_attention;  fp_layers.J.0.mlp.<mlp> ->
            up.J.mlp.<mlp>;  fp_layers.J.K.<pvconv> -> up.J.pvconvs.(K-1).<pvconv>;
            classifier.0.<mlp> -> head_mlp.<mlp>;  classifier.2 -> head_out
  <pvconv>: voxel_layers.0/1/4/5 -> voxel_conv1/voxel_norm1/voxel_conv2/voxel_norm2;
            voxel_layers.6.fc.0/fc.2 -> squeeze_excite.reduce/expand;
            point_features.<mlp> -> point_branch.<mlp>;  attn -> attention
  <mlp>:    layers.(3n) -> convs.n;  layers.(3n+1) -> norms.n (adaptive norms: norm -> norm,
            emd -> scale_shift)

Priors trained with LION's mixed score carry a `mixing_logit` ([1, 128, 1, 1] for z0, and
[1, N·4, 1, 1] for h0, flattened point-major as the official h0 prior views its input
[B, N, 4]); they become `shape_prior.mixing_logit` [128] and `point_prior.mixing_logit` [N, 4],
and the converted config says `diffusion.prediction = "mixed"`.

The released priors embed 1-based step numbers; ours take 0-based indices and add 1 (see
`backend.models.priors`), so converted priors compute the same noise predictions.
"""
import dataclasses
import re
from typing import Dict

import torch

from backend.config import LionConfig, get_config

OFFICIAL_PARTS = ("vae", "global_prior", "local_prior")


def _norm_key(rest):
    return re.sub(r"^emd\.", "scale_shift.", rest)


def _mlp_key(rest):
    match = re.fullmatch(r"layers\.(\d+)\.(.+)", rest)
    if not match:
        raise KeyError(rest)
    index, tail = int(match.group(1)), match.group(2)
    if index % 3 == 0:
        return f"convs.{index // 3}.{tail}"
    if index % 3 == 1:
        return f"norms.{index // 3}.{_norm_key(tail)}"
    raise KeyError(rest)


_VOXEL_LAYERS = {"0": "voxel_conv1", "1": "voxel_norm1", "4": "voxel_conv2", "5": "voxel_norm2"}


def _pvconv_key(rest):
    match = re.fullmatch(r"voxel_layers\.(\d+)\.(.+)", rest)
    if match and match.group(1) in _VOXEL_LAYERS:
        name, tail = _VOXEL_LAYERS[match.group(1)], match.group(2)
        return f"{name}.{_norm_key(tail) if 'norm' in name else tail}"
    match = re.fullmatch(r"voxel_layers\.6\.fc\.([02])\.weight", rest)
    if match:
        return f"squeeze_excite.{'reduce' if match.group(1) == '0' else 'expand'}.weight"
    if rest.startswith("point_features."):
        return "point_branch." + _mlp_key(rest[len("point_features."):])
    if rest.startswith("attn."):
        return "attention." + rest[len("attn."):]
    raise KeyError(rest)


def _stage_key(stage_prefix, rest):
    """A set-abstraction stage: PVConv blocks (numbered) and the grouping module ('mlps.0')."""
    match = re.fullmatch(r"(?:(\d+)\.)?mlps\.0\.(.+)", rest)
    if match:
        return f"{stage_prefix}.group_mlp.{_mlp_key(match.group(2))}"
    match = re.fullmatch(r"(\d+)\.(.+)", rest)
    if match:
        return f"{stage_prefix}.pvconvs.{match.group(1)}.{_pvconv_key(match.group(2))}"
    raise KeyError(rest)


def _unet_key(rest):
    match = re.fullmatch(r"sa_layers\.(\d+)\.(.+)", rest)
    if match:
        return _stage_key(f"down.{match.group(1)}", match.group(2))
    if rest.startswith("global_att."):
        return "global_attention." + rest[len("global_att."):]
    match = re.fullmatch(r"fp_layers\.(\d+)\.0\.mlp\.(.+)", rest)
    if match:
        return f"up.{match.group(1)}.mlp.{_mlp_key(match.group(2))}"
    match = re.fullmatch(r"fp_layers\.(\d+)\.(\d+)\.(.+)", rest)
    if match and int(match.group(2)) > 0:
        return f"up.{match.group(1)}.pvconvs.{int(match.group(2)) - 1}.{_pvconv_key(match.group(3))}"
    match = re.fullmatch(r"classifier\.0\.(.+)", rest)
    if match:
        return "head_mlp." + _mlp_key(match.group(1))
    match = re.fullmatch(r"classifier\.2\.(weight|bias)", rest)
    if match:
        return "head_out." + match.group(1)
    raise KeyError(rest)


def _vae_key(key):
    if key.startswith("style_encoder.mlp."):
        return "vae.shape_latent_encoder.to_posterior." + key[len("style_encoder.mlp."):]
    match = re.fullmatch(r"style_encoder\.layers\.(\d+)\.(.+)", key)
    if match:
        return _stage_key(f"vae.shape_latent_encoder.stages.{match.group(1)}", match.group(2))
    if key.startswith("encoder.layers."):
        return "vae.latent_point_encoder.unet." + _unet_key(key[len("encoder.layers."):])
    if key.startswith("decoder.layers."):
        return "vae.decoder.unet." + _unet_key(key[len("decoder.layers."):])
    raise KeyError(key)


_GLOBAL_PRIOR_LAYERS = {"temb_layer.0": "time_in", "temb_layer.1": "time_out",
                        "input_layer": "input_proj", "output_layer": "output_proj"}
_GLOBAL_BLOCK_LAYERS = {"conv1": "linear1", "conv2": "linear2",
                        "SE.fc.0": "squeeze_excite.reduce", "SE.fc.2": "squeeze_excite.expand"}


def _global_prior_key(key):
    if key == "mixing_logit":
        return "shape_prior.mixing_logit"
    match = re.fullmatch(r"(temb_layer\.[01]|input_layer|output_layer)\.(weight|bias)", key)
    if match:
        return f"shape_prior.{_GLOBAL_PRIOR_LAYERS[match.group(1)]}.{match.group(2)}"
    match = re.fullmatch(r"all_modules\.(\d+)\.(conv1|conv2|SE\.fc\.0|SE\.fc\.2)\.(weight|bias)", key)
    if match:
        return f"shape_prior.blocks.{match.group(1)}.{_GLOBAL_BLOCK_LAYERS[match.group(2)]}.{match.group(3)}"
    raise KeyError(key)


def _local_prior_key(key):
    if key == "mixing_logit":
        return "point_prior.mixing_logit"
    match = re.fullmatch(r"embedf\.([02])\.(weight|bias)", key)
    if match:
        return f"point_prior.time_mlp.{match.group(1)}.{match.group(2)}"
    return "point_prior.unet." + _unet_key(key)


_PART_MAPPERS = {"vae": _vae_key, "global_prior": _global_prior_key, "local_prior": _local_prior_key}


def official_key_to_ours(part: str, key: str) -> str:
    """Our state-dict key for official `key` of state dict `part` ('vae', 'global_prior' or
    'local_prior'). Raises ValueError for a key the released architecture does not have."""
    if part not in _PART_MAPPERS:
        raise ValueError(f"part must be one of {OFFICIAL_PARTS}, got {part!r}")
    try:
        return _PART_MAPPERS[part](key)
    except KeyError:
        raise ValueError(f"key {key!r} of the official {part} state dict is not part of the released "
                         "LION architecture (CLIP-conditioned models are not supported)") from None


def split_official_checkpoint(checkpoint: dict) -> Dict[str, Dict[str, torch.Tensor]]:
    """The three official state dicts of a loaded release checkpoint.

    Accepts the release layout ({'vae_state_dict', 'dae_state_dict'} with the priors under
    '0.' and '1.') or a dict that already has 'vae', 'global_prior' and 'local_prior'.
    'module.' prefixes (from DistributedDataParallel) are removed.
    """
    if not isinstance(checkpoint, dict):
        raise ValueError(f"checkpoint must be a dict, got {type(checkpoint).__name__}")
    if all(part in checkpoint for part in OFFICIAL_PARTS):
        parts = {part: checkpoint[part] for part in OFFICIAL_PARTS}
    elif "vae_state_dict" in checkpoint and "dae_state_dict" in checkpoint:
        priors = _strip_module_prefix(checkpoint["dae_state_dict"])
        parts = {
            "vae": checkpoint["vae_state_dict"],
            "global_prior": {k[2:]: v for k, v in priors.items() if k.startswith("0.")},
            "local_prior": {k[2:]: v for k, v in priors.items() if k.startswith("1.")},
        }
    else:
        raise ValueError("checkpoint must hold 'vae_state_dict' and 'dae_state_dict' (a LION release "
                         f"checkpoint) or 'vae', 'global_prior' and 'local_prior'; it has {sorted(checkpoint)[:8]}")
    for part, state in parts.items():
        if not isinstance(state, dict) or not state:
            raise ValueError(f"checkpoint's {part} state dict is missing or empty")
    return {part: _strip_module_prefix(state) for part, state in parts.items()}


def _strip_module_prefix(state):
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def convert_state_dicts(official: Dict[str, Dict[str, torch.Tensor]],
                        config: LionConfig = None) -> Dict[str, torch.Tensor]:
    """Our `LionModel` state dict from the three official state dicts.

    official: {'vae': ..., 'global_prior': ..., 'local_prior': ...} (see
    `split_official_checkpoint`). config: the architecture to fill, `paper` by default.
    Every official tensor must land on exactly one of ours with the same number of elements,
    and every one of ours must be filled; otherwise ValueError says which key is wrong.
    Returned tensors are float32, reshaped to our layout.
    """
    from backend.models import LionModel

    config = config_for(official, config)
    with torch.device("meta"):
        target = LionModel(config).state_dict()
    converted = {}
    for part in OFFICIAL_PARTS:
        if part not in official:
            raise ValueError(f"official must contain the {part!r} state dict")
        for key, value in official[part].items():
            ours = official_key_to_ours(part, key)
            if ours not in target:
                raise ValueError(f"official {part} key {key!r} maps to {ours!r}, which the config does not have")
            if ours in converted:
                raise ValueError(f"official {part} key {key!r} maps to {ours!r} a second time")
            shape = target[ours].shape
            if value.numel() != shape.numel():
                raise ValueError(f"official {part} key {key!r} has shape {tuple(value.shape)}, "
                                 f"but {ours!r} needs {tuple(shape)}: not the architecture of config {config.name!r}")
            converted[ours] = value.detach().to(torch.float32).reshape(shape).clone()
    missing = sorted(set(target) - set(converted))
    if missing:
        raise ValueError(f"the official checkpoint lacks {len(missing)} tensors of ours, e.g. {missing[:3]}")
    return converted


def config_for(official, config=None) -> LionConfig:
    """`config` (default `paper`) with the parameterization the official priors were trained
    with: "mixed" when both carry a mixing_logit, "eps" when neither does."""
    config = config or get_config("paper")
    mixed = ["mixing_logit" in official.get(part, {}) for part in ("global_prior", "local_prior")]
    if mixed[0] != mixed[1]:
        raise ValueError("only one of the official priors has a mixing_logit; a LION release has both or neither")
    prediction = "mixed" if mixed[0] else "eps"
    return dataclasses.replace(config, diffusion=dataclasses.replace(config.diffusion, prediction=prediction))


def load_official_checkpoint(path) -> Dict[str, Dict[str, torch.Tensor]]:
    """Read a released LION .pt file without executing code (torch.load weights_only=True)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"path {path} does not exist") from None
    except Exception as error:
        raise ValueError(f"path {path} cannot be read as a weights-only PyTorch checkpoint: {error}") from error
    return split_official_checkpoint(checkpoint)


def convert_checkpoint(official_path, out_path, normalization=None, dataset=None):
    """Convert the released checkpoint at `official_path` and save it at `out_path` in our
    format (`backend.checkpoint`), with config `paper`. Returns the converted `LionModel`.

    normalization: a `backend.data.normalization` object describing the data the official model
    was trained on (the release does not record it), or None.
    """
    from backend.checkpoint import save_model
    from backend.models import LionModel

    official = load_official_checkpoint(official_path)
    state = convert_state_dicts(official)
    with torch.device("meta"):
        model = LionModel(config_for(official), normalization)
    model.load_state_dict(state, assign=True)
    save_model(out_path, model, dataset=dataset, extra={"converted_from": "nv-tlabs/LION release checkpoint"})
    return model.eval()
