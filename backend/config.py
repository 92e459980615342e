"""Model configurations as plain data: dataclasses that round-trip through JSON.

A `LionConfig` describes every network of a LION model (the hierarchical VAE and both latent
diffusion priors) plus the diffusion schedule they were trained with. It travels inside every
checkpoint, so a checkpoint always rebuilds the exact networks that produced its weights.

Two named configurations ship:
- `paper`: the sizes of the released LION models (appendix Tables 5-9 of the paper and the
  public chair/airplane/car checkpoints): VAE 22.40M parameters, z0 prior 77.17M, h0 prior 11.42M.
- `tiny`: the same architecture at small widths and voxel grids, for training and sampling on
  a laptop CPU.

`get_config(name)` returns a fresh copy; `LionConfig.to_json()` / `LionConfig.from_json()`
convert to and from text; `from_dict` rejects unknown keys with a ValueError naming them.
"""
import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from typing import List

GROUP_NORM_GROUPS = 8
PREDICTIONS = ("eps", "v", "mixed")  # what a prior network outputs; backend.diffusion converts
SQUEEZE_EXCITE_REDUCTION = 8


@dataclass
class SetAbstractionStage:
    """One down-sampling stage of a PVCNN: PVConv blocks, then furthest-point sampling of
    `num_centers` centers, ball-query grouping of `num_neighbors` points within `radius`, a
    shared MLP and a max-pool over each group.

    `pvconv_layers` = 0 makes a pure grouping stage (pvconv_channels and voxel_resolution are
    then unused). `attention` adds linear attention after the first PVConv of the stage.
    """

    pvconv_layers: int
    pvconv_channels: int
    voxel_resolution: int
    num_centers: int
    radius: float
    num_neighbors: int
    mlp_channels: List[int]
    attention: bool = False


@dataclass
class FeaturePropagationStage:
    """One up-sampling stage: three-nearest-neighbour interpolation from the coarser level, a
    concatenation with the skip features, a shared MLP, then `pvconv_layers` PVConv blocks."""

    mlp_channels: List[int]
    pvconv_layers: int
    pvconv_channels: int
    voxel_resolution: int


@dataclass
class UNetConfig:
    """A PVCNN U-Net: set-abstraction stages, global linear attention, feature-propagation
    stages (as many as set-abstraction stages) and a per-point head."""

    down: List[SetAbstractionStage]
    up: List[FeaturePropagationStage]
    global_attention_heads: int = 8
    attention_heads: int = 4
    attention_head_channels: int = 32
    head_channels: int = 128
    dropout: float = 0.1
    # The released networks pass only the extra input channels (not xyz) to the last
    # propagation stage, which then sees each point's position only through voxels and its 3
    # nearest centers. True passes xyz too, so a coarse grid can still place each point exactly
    # (what a small point prior needs for the fine denoising of the last sampling steps).
    xyz_in_finest_skip: bool = False


@dataclass
class ShapeLatentEncoderConfig:
    """The encoder q(z0|x): set-abstraction stages, a max-pool over the last centers and a
    linear layer to the mean and log sigma of z0."""

    stages: List[SetAbstractionStage]
    dropout: float = 0.1


@dataclass
class VAEConfig:
    """The hierarchical VAE: shape-latent encoder, latent-point encoder and decoder."""

    shape_latent_encoder: ShapeLatentEncoderConfig
    latent_point_encoder: UNetConfig
    decoder: UNetConfig
    num_points: int = 2048
    shape_latent_dim: int = 128
    point_feature_dim: int = 1
    skip_weight: float = 0.01
    log_sigma_offset: float = 6.0
    adaptive_norm_init_scale: float = 0.1
    # Standard deviation of extra noise on the xyz of every sampled latent point, on top of the
    # posterior's own (0 in LION). With it the priors learn, and the decoder cleans up, latent
    # points that are a noisy version of the shape: a prior's small misplacements then fall
    # within the noise the decoder was trained to remove, and the decoder carries the detail.
    latent_point_noise: float = 0.0


@dataclass
class ShapeLatentPriorConfig:
    """The z0 prior: a residual squeeze-excitation MLP with a sinusoidal time embedding."""

    hidden_channels: int = 2048
    num_blocks: int = 8
    time_embedding_dim: int = 128
    time_hidden_channels: int = 512
    dropout: float = 0.4
    # Category names of a class-conditioned prior (empty: unconditional, as released). Each
    # gets a learned embedding added to the time embedding, plus one for "no category", which
    # classifier-free guidance mixes with the asked one.
    categories: List[str] = field(default_factory=list)
    # How often each category occurs among the training shapes, in the order of `categories`
    # (empty: not recorded). It is p(category), the top of the model's chain: generating with
    # no category asked draws each shape's category from it (`LionModel.draw_categories`).
    category_shares: List[float] = field(default_factory=list)


@dataclass
class LatentPointPriorConfig:
    """The h0 prior: a PVCNN U-Net on the latent points, conditioned on z0 and the time step."""

    unet: UNetConfig
    time_embedding_dim: int = 64


TEMPLATE_SHAPE_LATENTS = ("sample", "mean")


@dataclass
class PointTemplateConfig:
    """Not in LION: a decoder from z0 straight to latent points (an MLP whose last layer emits
    all N of them), trained by matching them to the VAE's latent points of the same shape
    (`python -m backend.train template`). When a model has one, fresh shapes take their latent
    points from it instead of from the h0 prior: on a CPU-trained model the h0 prior misplaces
    parts that the template places (models/default.md). Variations, interpolation and guides
    still start from encoded latent points and use the h0 prior.
    """

    # Hidden widths of the MLP; empty: no template (LION's way, what `paper` and `tiny` build).
    hidden_channels: List[int] = field(default_factory=list)
    # Empty: the MLP's last layer emits all N points at once, a linear mix of learned point sets.
    # Widths: a per-point network follows the MLP instead (FoldingNet's idea): point i is
    # point_mlp(MLP(z0), code_i) with a learned code of point_code_channels per point, so parts
    # can move nonlinearly with z0.
    point_hidden_channels: List[int] = field(default_factory=list)
    point_code_channels: int = 32
    # The z0 the template maps. "sample": posterior samples, drawn for Generate by the model's
    # z0 prior, which was trained on them. "mean": posterior means, drawn by the template's own
    # z0 prior (`point_template.shape_prior.*`, the shape prior's architecture) trained on
    # them: on the default model a posterior sample of z0 is mostly noise within a category
    # (sigma 0.23 against a spread of the means of 0.11), so a template fed samples makes each
    # category's average shape.
    shape_latent: str = "sample"


@dataclass
class DiffusionConfig:
    """The forward process both priors were trained with, T steps of a linear beta schedule, and
    what their networks predict (`prediction`, see backend.diffusion.PREDICTIONS):

    - "eps": the noise (the released LION priors without mixed score);
    - "v": v = sqrt(a_t)·eps - sqrt(1 - a_t)·x0, bounded at every step;
    - "mixed": LION's mixed score, the noise of N(0, I) data corrected by the network through
      learnable per-dimension logits (`mixing_logit` of each prior, starting at
      `mixing_logit_init`).
    """

    num_steps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction: str = "eps"
    mixing_logit_init: float = -6.0


@dataclass
class LionConfig:
    """Everything needed to rebuild a LION model's networks."""

    name: str
    vae: VAEConfig
    shape_prior: ShapeLatentPriorConfig
    point_prior: LatentPointPriorConfig
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    point_template: PointTemplateConfig = field(default_factory=PointTemplateConfig)

    @property
    def latent_point_dim(self) -> int:
        """Channels of one latent point: xyz plus the extra features (3 + D_h)."""
        return 3 + self.vae.point_feature_dim

    def to_dict(self) -> dict:
        """Nested plain dicts and lists (JSON-ready)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The config as indented JSON text with sorted keys."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "LionConfig":
        """Rebuild and validate a config from `to_dict` output; ValueError names a bad key."""
        config = _from_dict(cls, _upgrade(data), "config")
        validate_config(config)
        return config

    @classmethod
    def from_json(cls, text: str) -> "LionConfig":
        """Rebuild and validate a config from `to_json` output."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"text is not valid JSON: {error}") from error
        return cls.from_dict(data)


def _upgrade(data):
    """Configs written before `diffusion.prediction` existed carry `mixed_prediction` instead."""
    diffusion = data.get("diffusion") if isinstance(data, dict) else None
    if isinstance(diffusion, dict) and "mixed_prediction" in diffusion:
        diffusion = dict(diffusion)
        mixed = diffusion.pop("mixed_prediction")
        if not isinstance(mixed, bool):
            raise ValueError(f"config.diffusion.mixed_prediction must be true or false, got {mixed!r}")
        diffusion.setdefault("prediction", "mixed" if mixed else "eps")
        data = {**data, "diffusion": diffusion}
    return data


def _from_dict(cls, data, path):
    """Build dataclass `cls` from nested dicts/lists, naming the first bad key by its path."""
    if not isinstance(data, dict):
        raise ValueError(f"{path} must be a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{path} has unknown keys {unknown}")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ValueError(f"{path}.{f.name} is missing")
            continue
        values[f.name] = _convert(hints[f.name], data[f.name], f"{path}.{f.name}")
    return cls(**values)


def _convert(hint, value, path):
    if dataclasses.is_dataclass(hint):
        return _from_dict(hint, value, path)
    if typing.get_origin(hint) in (list, List):
        if not isinstance(value, list):
            raise ValueError(f"{path} must be a list, got {type(value).__name__}")
        (item_hint,) = typing.get_args(hint)
        return [_convert(item_hint, item, f"{path}[{i}]") for i, item in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{path} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{path} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{path} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{path} must be a string, got {value!r}")
        return value
    raise ValueError(f"{path} has an unsupported type {hint}")


def _check_channels(channels, path):
    # GroupNorm(8) and squeeze-excitation by 8 need multiples of 8.
    if channels <= 0 or channels % GROUP_NORM_GROUPS:
        raise ValueError(f"{path} must be a positive multiple of {GROUP_NORM_GROUPS}, got {channels}")


def _validate_down(stages, path):
    if not stages:
        raise ValueError(f"{path} must hold at least one stage")
    previous_centers = None
    for i, stage in enumerate(stages):
        where = f"{path}[{i}]"
        if stage.pvconv_layers < 0:
            raise ValueError(f"{where}.pvconv_layers must be >= 0, got {stage.pvconv_layers}")
        if stage.pvconv_layers:
            _check_channels(stage.pvconv_channels, f"{where}.pvconv_channels")
            if stage.voxel_resolution < 1:
                raise ValueError(f"{where}.voxel_resolution must be >= 1, got {stage.voxel_resolution}")
        elif stage.attention:
            raise ValueError(f"{where}.attention needs a PVConv layer to follow")
        if stage.num_centers < 1 or (previous_centers and stage.num_centers > previous_centers):
            raise ValueError(f"{where}.num_centers must be >= 1 and not grow, got {stage.num_centers}")
        if not stage.radius > 0 or stage.num_neighbors < 1:
            raise ValueError(f"{where} needs radius > 0 and num_neighbors >= 1")
        if not stage.mlp_channels:
            raise ValueError(f"{where}.mlp_channels must not be empty")
        for channels in stage.mlp_channels:
            _check_channels(channels, f"{where}.mlp_channels")
        previous_centers = stage.num_centers


def _validate_unet(unet: UNetConfig, path):
    _validate_down(unet.down, f"{path}.down")
    if len(unet.up) != len(unet.down):
        raise ValueError(f"{path}.up must have as many stages as {path}.down ({len(unet.down)}), got {len(unet.up)}")
    for i, stage in enumerate(unet.up):
        where = f"{path}.up[{i}]"
        if not stage.mlp_channels:
            raise ValueError(f"{where}.mlp_channels must not be empty")
        for channels in stage.mlp_channels:
            _check_channels(channels, f"{where}.mlp_channels")
        if stage.pvconv_layers:
            _check_channels(stage.pvconv_channels, f"{where}.pvconv_channels")
            if stage.voxel_resolution < 1:
                raise ValueError(f"{where}.voxel_resolution must be >= 1, got {stage.voxel_resolution}")
    _check_channels(unet.head_channels, f"{path}.head_channels")
    if unet.attention_heads < 1 or unet.global_attention_heads < 0 or unet.attention_head_channels < 1:
        raise ValueError(f"{path} attention sizes must be positive")
    if not 0 <= unet.dropout < 1:
        raise ValueError(f"{path}.dropout must be in [0, 1), got {unet.dropout}")


def validate_config(config: LionConfig) -> None:
    """Raise ValueError naming the first field that cannot build a working model."""
    vae = config.vae
    _validate_down(vae.shape_latent_encoder.stages, "vae.shape_latent_encoder.stages")
    _validate_unet(vae.latent_point_encoder, "vae.latent_point_encoder")
    _validate_unet(vae.decoder, "vae.decoder")
    _validate_unet(config.point_prior.unet, "point_prior.unet")
    if vae.num_points < vae.latent_point_encoder.down[0].num_centers:
        raise ValueError(f"vae.num_points ({vae.num_points}) must be >= the first stage's num_centers")
    if vae.shape_latent_dim < 1 or vae.point_feature_dim < 0:
        raise ValueError("vae.shape_latent_dim must be >= 1 and vae.point_feature_dim >= 0")
    if not math.isfinite(vae.latent_point_noise) or vae.latent_point_noise < 0:
        raise ValueError(f"vae.latent_point_noise must be a finite number >= 0, got {vae.latent_point_noise!r}")
    prior = config.shape_prior
    _check_channels(prior.hidden_channels, "shape_prior.hidden_channels")
    if prior.num_blocks < 1 or prior.time_hidden_channels < 1:
        raise ValueError("shape_prior.num_blocks and shape_prior.time_hidden_channels must be >= 1")
    for name, dim in (("shape_prior.time_embedding_dim", prior.time_embedding_dim),
                      ("point_prior.time_embedding_dim", config.point_prior.time_embedding_dim)):
        if dim < 4 or dim % 2:
            raise ValueError(f"{name} must be an even number >= 4, got {dim}")
    diffusion = config.diffusion
    if diffusion.num_steps < 1 or not 0 < diffusion.beta_start <= diffusion.beta_end < 1:
        raise ValueError("diffusion needs num_steps >= 1 and 0 < beta_start <= beta_end < 1")
    if diffusion.prediction not in PREDICTIONS:
        raise ValueError(f"diffusion.prediction must be one of {', '.join(PREDICTIONS)}, got {diffusion.prediction!r}")
    categories = prior.categories
    if any(not isinstance(name, str) or not name.strip() for name in categories) or len(set(categories)) != len(categories):
        raise ValueError(f"shape_prior.categories must be distinct non-empty names, got {categories!r}")
    shares = prior.category_shares
    is_share = lambda share: (isinstance(share, (int, float)) and not isinstance(share, bool)  # noqa: E731
                              and math.isfinite(share) and share >= 0)
    if shares and (len(shares) != len(categories) or not all(map(is_share, shares)) or sum(shares) <= 0):
        raise ValueError(f"shape_prior.category_shares must be empty or one finite share >= 0 per category, "
                         f"not all 0; got {shares!r} for {len(categories)} categories")
    if any(width < 1 for width in config.point_template.hidden_channels):
        raise ValueError(f"point_template.hidden_channels must be widths >= 1, got {config.point_template.hidden_channels!r}")
    if config.point_template.shape_latent not in TEMPLATE_SHAPE_LATENTS:
        raise ValueError(f"point_template.shape_latent must be one of {TEMPLATE_SHAPE_LATENTS}, "
                         f"got {config.point_template.shape_latent!r}")
    if any(width < 1 for width in config.point_template.point_hidden_channels) or config.point_template.point_code_channels < 1:
        raise ValueError(f"point_template.point_hidden_channels must be widths >= 1 and point_code_channels >= 1, got "
                         f"{config.point_template.point_hidden_channels!r}, {config.point_template.point_code_channels!r}")


def _unet(down, up, dropout=0.1) -> UNetConfig:
    return UNetConfig(
        down=[SetAbstractionStage(*stage) for stage in down],
        up=[FeaturePropagationStage(*stage) for stage in up],
        dropout=dropout,
    )


# Stage tables. Down: (pvconv_layers, pvconv_channels, voxel_resolution, num_centers, radius,
# num_neighbors, mlp_channels, attention). Up: (mlp_channels, pvconv_layers, pvconv_channels,
# voxel_resolution). The released models build one PVConv in down stages 2 and 3 (the tables'
# "# PVC layers 2 1 1 -") and the MLP widths of their state dicts, which these follow.
_PAPER_UP = [
    ([128, 128], 3, 128, 8),
    ([128, 128], 3, 128, 8),
    ([128, 128], 2, 128, 16),
    ([128, 128, 64], 2, 64, 32),
]


def _paper_down(third_stage_mlp):
    return [
        (2, 32, 32, 1024, 0.1, 32, [32, 64], False),
        (1, 64, 16, 256, 0.2, 32, [64, 128], True),
        (1, 128, 8, 64, 0.4, 32, third_stage_mlp, False),
        (0, 0, 0, 16, 0.8, 32, [128, 128, 128], False),
    ]


def paper_config() -> LionConfig:
    """The released LION sizes (2048 points, z0 in R^128, latent points 2048 x (3+1))."""
    shape_encoder = ShapeLatentEncoderConfig(stages=[
        SetAbstractionStage(2, 32, 32, 1024, 0.1, 32, [32, 32], False),
        SetAbstractionStage(1, 32, 16, 256, 0.2, 32, [32, 64], True),
    ])
    return LionConfig(
        name="paper",
        vae=VAEConfig(
            shape_latent_encoder=shape_encoder,
            latent_point_encoder=_unet(_paper_down([128, 256]), _PAPER_UP),
            decoder=_unet(_paper_down([128, 256]), _PAPER_UP),
        ),
        shape_prior=ShapeLatentPriorConfig(),
        point_prior=LatentPointPriorConfig(unet=_unet(_paper_down([128, 128]), _PAPER_UP)),
    )


def tiny_config() -> LionConfig:
    """The paper architecture at laptop-CPU widths: still 2048 points and z0 in R^128, but one
    PVConv per stage, half the voxel grid sizes (16/8/4 down, 4/4/8/16 up), 128/32/16/8 centers
    with 16 neighbours, half the channels, smaller attention, and a 4-block z0 prior of width
    256. Furthest point sampling, ball query and 3-NN dominate CPU time, hence the few centers.
    Same code paths as `paper`."""
    down = [
        (1, 16, 16, 128, 0.1, 16, [16, 32], False),
        (1, 32, 8, 32, 0.2, 16, [32, 64], True),
        (1, 64, 4, 16, 0.4, 16, [64, 64], False),
        (0, 0, 0, 8, 0.8, 16, [64, 64, 64], False),
    ]
    up = [
        ([64, 64], 1, 64, 4),
        ([64, 64], 1, 64, 4),
        ([64, 64], 1, 64, 8),
        ([64, 64, 32], 1, 32, 16),
    ]
    shape_encoder = ShapeLatentEncoderConfig(stages=[
        SetAbstractionStage(1, 16, 16, 128, 0.1, 16, [16, 16], False),
        SetAbstractionStage(1, 16, 8, 32, 0.2, 16, [16, 32], True),
    ])
    unet_head = dict(global_attention_heads=4, attention_heads=2, attention_head_channels=16, head_channels=64)
    return LionConfig(
        name="tiny",
        vae=VAEConfig(
            shape_latent_encoder=shape_encoder,
            latent_point_encoder=dataclasses.replace(_unet(down, up), **unet_head),
            decoder=dataclasses.replace(_unet(down, up), **unet_head),
        ),
        shape_prior=ShapeLatentPriorConfig(hidden_channels=256, num_blocks=4, time_embedding_dim=64,
                                           time_hidden_channels=128, dropout=0.2),
        point_prior=LatentPointPriorConfig(unet=dataclasses.replace(_unet(down, up), **unet_head),
                                           time_embedding_dim=32),
    )


CONFIGS = {"paper": paper_config, "tiny": tiny_config}


def _tiny_point_prior(xyz_in_finest_skip=False, radius_scale=1.0, finest_resolution=None) -> LatentPointPriorConfig:
    prior = tiny_config().point_prior
    down = [dataclasses.replace(stage, radius=stage.radius * radius_scale) for stage in prior.unet.down]
    up = list(prior.unet.up)
    if finest_resolution:  # the grids of the first and last stage; the 3x3x3 kernels keep their shapes
        down[0] = dataclasses.replace(down[0], voxel_resolution=finest_resolution)
        up[-1] = dataclasses.replace(up[-1], voxel_resolution=finest_resolution)
    unet = dataclasses.replace(prior.unet, down=down, up=up, xyz_in_finest_skip=xyz_in_finest_skip)
    return dataclasses.replace(prior, unet=unet)


# h0-prior architectures a prior stage may train in place of its VAE model's (`--point-prior`).
POINT_PRIORS = {
    "paper": lambda: paper_config().point_prior,
    "tiny": lambda: tiny_config().point_prior,
    "tiny-xyz": lambda: _tiny_point_prior(xyz_in_finest_skip=True),
    # Radii 4x: the procedural data's latent points spread ~0.7 per axis, where `tiny`'s balls
    # (0.1 around 128 centers, 0.2 around 32, ...) hold 1-3 neighbours, so grouping barely
    # aggregates; 4x fills them (up to their 16 neighbours) at the same cost.
    "tiny-xyz-wide": lambda: _tiny_point_prior(xyz_in_finest_skip=True, radius_scale=4.0),
    # 32-voxel grids in the first and last stage (16 in `tiny`), where the fine surface is made.
    "tiny-xyz-fine": lambda: _tiny_point_prior(xyz_in_finest_skip=True, finest_resolution=32),
}


def get_point_prior(name: str) -> LatentPointPriorConfig:
    """A fresh copy of the named h0-prior architecture (POINT_PRIORS)."""
    if name not in POINT_PRIORS:
        raise ValueError(f"point prior must be one of {sorted(POINT_PRIORS)}, got {name!r}")
    return POINT_PRIORS[name]()


def get_config(name: str) -> LionConfig:
    """A fresh copy of the named configuration ('paper' or 'tiny')."""
    if name not in CONFIGS:
        raise ValueError(f"name must be one of {sorted(CONFIGS)}, got {name!r}")
    config = CONFIGS[name]()
    validate_config(config)
    return config
