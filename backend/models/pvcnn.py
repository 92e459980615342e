"""Point-voxel CNN pieces: PVConv, set abstraction, feature propagation and the PVCNN U-Net.

Shapes: B batch, C channels, N points, M centers, K neighbours, r voxel grid resolution.
Coordinates travel as float [B, 3, N]; features as float [B, C, N]. A `condition` is the shape
latent z0 [B, D] that drives the adaptive group norms, or None for plain group norms.
The geometric work (voxelization, ball query, furthest point sampling, interpolation) is done
by `kernels.ops`, which picks the CUDA kernels or the PyTorch reference.
"""
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from backend.config import FeaturePropagationStage, SetAbstractionStage, UNetConfig
from backend.models.layers import LinearAttention, PointwiseMLP, SqueezeExcite, make_norm
from kernels import ops


class PVConv(nn.Module):
    """Point-voxel convolution: a voxel branch (average-voxelize, two 3x3x3 convolutions with
    group norms, SiLU and dropout, squeeze-excitation, trilinear devoxelize) plus a point branch
    (one pointwise MLP layer), summed; optionally followed by linear attention, which replaces
    the sum (the released models have no residual around it)."""

    def __init__(self, in_channels: int, out_channels: int, resolution: int, condition_dim: int = 0,
                 attention_heads: int = 0, attention_head_channels: int = 32, dropout: float = 0.1,
                 init_scale: float = 0.1):
        super().__init__()
        self.resolution = resolution
        self.voxel_conv1 = nn.Conv3d(in_channels, out_channels, 3, padding=1)
        self.voxel_norm1 = make_norm(out_channels, condition_dim, init_scale)
        self.voxel_dropout = nn.Dropout(dropout)
        self.voxel_conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1)
        self.voxel_norm2 = make_norm(out_channels, condition_dim, init_scale)
        self.squeeze_excite = SqueezeExcite(out_channels)
        self.point_branch = PointwiseMLP(in_channels, [out_channels], 1, condition_dim, init_scale)
        self.attention = (LinearAttention(out_channels, attention_heads, attention_head_channels)
                          if attention_heads else None)

    def forward(self, features, coords, condition=None):
        """features: float [B, C_in, N]; coords: float [B, 3, N]; condition: [B, D] or None
        -> float [B, C_out, N]."""
        voxel_position = ops.voxel_coords(coords, self.resolution, normalize=True, eps=0.0)
        grid = ops.avg_voxelize(features, torch.round(voxel_position).to(torch.int32), self.resolution)
        grid = F.silu(self.voxel_norm1(self.voxel_conv1(grid), condition))
        grid = self.voxel_norm2(self.voxel_conv2(self.voxel_dropout(grid)), condition)
        grid = self.squeeze_excite(grid)
        fused = ops.trilinear_devoxelize(grid, voxel_position, self.training)
        fused = fused + self.point_branch(features, condition)
        if self.attention is not None:
            fused = self.attention(fused)
        return fused


def _pvconv_stack(count, in_channels, out_channels, resolution, condition_dim, attention_heads,
                  attention_head_channels, dropout, init_scale):
    layers = nn.ModuleList()
    for index in range(count):
        layers.append(PVConv(in_channels, out_channels, resolution, condition_dim,
                             attention_heads if index == 0 else 0, attention_head_channels,
                             dropout, init_scale))
        in_channels = out_channels
    return layers


class SetAbstraction(nn.Module):
    """PVConv blocks, then furthest-point sampling of centers, ball-query grouping (relative
    neighbour coordinates first, then neighbour features), a pointwise MLP and a max-pool over
    each group."""

    def __init__(self, in_channels: int, stage: SetAbstractionStage, condition_dim: int = 0,
                 attention_heads: int = 4, attention_head_channels: int = 32, dropout: float = 0.1,
                 init_scale: float = 0.1):
        super().__init__()
        self.num_centers = stage.num_centers
        self.radius = stage.radius
        self.num_neighbors = stage.num_neighbors
        self.pvconvs = _pvconv_stack(stage.pvconv_layers, in_channels, stage.pvconv_channels,
                                     stage.voxel_resolution, condition_dim,
                                     attention_heads if stage.attention else 0,
                                     attention_head_channels, dropout, init_scale)
        grouped_channels = stage.pvconv_channels if stage.pvconv_layers else in_channels
        self.group_mlp = PointwiseMLP(grouped_channels + 3, stage.mlp_channels, 2, condition_dim, init_scale)
        self.out_channels = self.group_mlp.out_channels

    def forward(self, features, coords, condition=None):
        """features: float [B, C_in, N]; coords: float [B, 3, N]; condition: [B, D] or None
        -> (features float [B, C_out, M], centers float [B, 3, M])."""
        for pvconv in self.pvconvs:
            features = pvconv(features, coords, condition)
        center_index = ops.furthest_point_sample(coords, self.num_centers)
        centers = torch.gather(coords, 2, center_index.unsqueeze(1).expand(-1, 3, -1))
        neighbours = ops.ball_query(centers, coords, self.radius, self.num_neighbors)
        offsets = ops.grouping(coords, neighbours) - centers.unsqueeze(-1)
        grouped = torch.cat([offsets, ops.grouping(features, neighbours)], dim=1)
        return self.group_mlp(grouped, condition).amax(dim=-1), centers


class FeaturePropagation(nn.Module):
    """Three-nearest-neighbour interpolation of coarse features at the finer points, a
    concatenation with the finer level's skip features, a pointwise MLP, then PVConv blocks."""

    def __init__(self, in_channels: int, stage: FeaturePropagationStage, condition_dim: int = 0,
                 dropout: float = 0.1, init_scale: float = 0.1):
        super().__init__()
        self.mlp = PointwiseMLP(in_channels, stage.mlp_channels, 1, condition_dim, init_scale)
        self.pvconvs = _pvconv_stack(stage.pvconv_layers, self.mlp.out_channels, stage.pvconv_channels,
                                     stage.voxel_resolution, condition_dim, 0, 32, dropout, init_scale)
        self.out_channels = stage.pvconv_channels if stage.pvconv_layers else self.mlp.out_channels

    def forward(self, points, centers, center_features, skip_features, condition=None):
        """points: float [B, 3, N]; centers: float [B, 3, M]; center_features: float [B, C_c, M];
        skip_features: float [B, C_s, N] (C_s may be 0); condition: [B, D] or None
        -> float [B, C_out, N]."""
        features = ops.three_nn_interpolate(points, centers, center_features)
        features = self.mlp(torch.cat([features, skip_features], dim=1), condition)
        for pvconv in self.pvconvs:
            features = pvconv(features, points, condition)
        return features


class PVCNNUNet(nn.Module):
    """The PVCNN U-Net of LION's encoder, decoder and h0 prior.

    Input: points with features, float [B, 3 + E, N] (xyz first; every channel, xyz included,
    feeds the first stage). Set-abstraction stages shrink the point set, global linear
    attention mixes the coarsest level, feature-propagation stages return to the N input
    points with skip connections (the finest skip is the E extra input channels), and a head
    (pointwise MLP, dropout, 1x1 convolution) gives float [B, out_channels, N].

    With `time_channels` > 0 a per-shape time feature [B, T] is appended to the input of every
    set-abstraction stage but the first and to the coarse features of every propagation stage.
    """

    def __init__(self, config: UNetConfig, extra_channels: int, out_channels: int, condition_dim: int,
                 time_channels: int = 0, init_scale: float = 0.1):
        super().__init__()
        self.extra_channels = extra_channels
        self.time_channels = time_channels
        self.down = nn.ModuleList()
        skip_channels: List[int] = []
        channels = 3 + extra_channels
        for index, stage in enumerate(config.down):
            skip_channels.append(channels)
            stage_in = channels + (time_channels if index > 0 else 0)
            self.down.append(SetAbstraction(stage_in, stage, condition_dim, config.attention_heads,
                                            config.attention_head_channels, config.dropout, init_scale))
            channels = self.down[-1].out_channels
        self.xyz_in_finest_skip = config.xyz_in_finest_skip
        skip_channels[0] = 3 + extra_channels if self.xyz_in_finest_skip else extra_channels
        self.global_attention = (LinearAttention(channels, config.global_attention_heads,
                                                 config.attention_head_channels)
                                 if config.global_attention_heads else None)
        self.up = nn.ModuleList()
        for index, stage in enumerate(config.up):
            stage_in = channels + skip_channels[-1 - index] + time_channels
            self.up.append(FeaturePropagation(stage_in, stage, condition_dim, config.dropout, init_scale))
            channels = self.up[-1].out_channels
        self.head_mlp = PointwiseMLP(channels, [config.head_channels], 1, condition_dim, init_scale)
        self.head_dropout = nn.Dropout(config.dropout)
        self.head_out = nn.Conv1d(config.head_channels, out_channels, 1)

    def forward(self, inputs, condition=None, time_features: Optional[torch.Tensor] = None):
        """inputs: float [B, 3 + E, N]; condition: float [B, D] or None; time_features: float
        [B, T] (when built with time_channels = T) or None -> float [B, out_channels, N]."""
        if inputs.dim() != 3 or inputs.shape[1] != 3 + self.extra_channels:
            raise ValueError(f"inputs must have shape [B, {3 + self.extra_channels}, N], got {tuple(inputs.shape)}")
        expected_time = (inputs.shape[0], self.time_channels)
        if self.time_channels and (time_features is None or tuple(time_features.shape) != expected_time):
            raise ValueError(f"time_features must have shape [{inputs.shape[0]}, {self.time_channels}]")
        coords = inputs[:, :3]
        features = inputs
        skip_coords, skip_features = [], []
        for index, stage in enumerate(self.down):
            skip_coords.append(coords)
            skip_features.append(features)
            if index > 0:
                features = self._with_time(features, time_features)
            features, coords = stage(features, coords, condition)
        skip_features[0] = inputs if self.xyz_in_finest_skip else inputs[:, 3:]
        if self.global_attention is not None:
            features = self.global_attention(features)
        for index, stage in enumerate(self.up):
            points = skip_coords[-1 - index]
            features = stage(points, coords, self._with_time(features, time_features),
                             skip_features[-1 - index], condition)
            coords = points
        features = self.head_dropout(self.head_mlp(features, condition))
        return self.head_out(features)

    def _with_time(self, features, time_features):
        if not self.time_channels:
            return features
        time = time_features[:, :, None].expand(-1, -1, features.shape[-1])
        return torch.cat([features, time], dim=1)


def widen_for_xyz_in_finest_skip(state: dict, unet: "PVCNNUNet", prefix: str = "") -> dict:
    """A state dict holding a U-Net of the released layout under `prefix`, for `unet`: the same
    network with xyz in the finest skip. The last propagation stage's first weights get zero columns for
    the 3 new xyz inputs (between the interpolated features and the extra channels), so the
    widened network computes exactly what the released one did and training starts from there."""
    if not unet.xyz_in_finest_skip:
        raise ValueError("the target U-Net must have xyz_in_finest_skip")
    name = f"up.{len(unet.up) - 1}.mlp.convs.0.weight"
    key, target = prefix + name, unet.state_dict()[name]
    if key not in state or state[key].shape[1] + 3 != target.shape[1] or state[key].shape[0] != target.shape[0]:
        raise ValueError(f"{key}: expected the released layout's {target.shape[1] - 3} input channels")
    skip_start = target.shape[1] - (3 + unet.extra_channels)
    old = state[key]
    widened = torch.cat([old[:, :skip_start], old.new_zeros(old.shape[0], 3, *old.shape[2:]), old[:, skip_start:]], dim=1)
    return {**state, key: widened}
