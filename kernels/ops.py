"""Point-voxel operators with PVCNN's semantics: the public entry points of `kernels`.

B batch, C channels, N points, M centers, K neighbours, r grid resolution. Every function
validates its input (a ValueError names the offending argument), then runs the compiled
operators for the tensors' device, CPU or CUDA (`kernels.compiled_ops`; built on first use, see
`kernels.extension`), and the vectorized PyTorch reference (`kernels.reference`) where they
cannot run. Both paths give the same neighbours and samples, and the same features up to
floating-point summation order. Outputs are contiguous.

Floating tensors may be float32 or float64; float16 and bfloat16 inputs are computed in
float32 and give float32 results, as PVCNN's mixed-precision wrappers do. Gradients flow where
PVCNN's operators pass them: into features (`avg_voxelize`, `grouping`,
`three_nn_interpolate`) and voxel grids (`trilinear_devoxelize`), never into coordinates.
"""
import numbers

import torch

from kernels import compiled_ops, reference
from kernels.extension import compiled_for, implementation_info

__all__ = [
    "voxel_coords",
    "avg_voxelize",
    "trilinear_devoxelize",
    "ball_query",
    "grouping",
    "furthest_point_sample",
    "three_nn_interpolate",
    "implementation_info",
]

_COMPUTE_DTYPES = (torch.float32, torch.float64)
_HALF_DTYPES = (torch.float16, torch.bfloat16)


def voxel_coords(coords, r, normalize=True, eps=0.0):
    """Continuous voxel coordinates of each point, as PVCNN's Voxelization computes them.

    coords: float[B,3,N] point positions. The per-shape mean is subtracted; then with
    `normalize` the points are divided by (2 * largest distance from the mean + eps) and
    shifted by 0.5, otherwise mapped from [-1, 1] by (p + 1) / 2; the result is scaled by r
    and clamped to [0, r-1]. A shape whose points all coincide lands at r/2 (where PVCNN
    divides 0 by 0).

    Returns float[B,3,N] in the dtype of coords (float32 for half inputs), detached from the
    graph as in PVCNN. Round it (`torch.round`) to get the integer voxel of each point for
    `avg_voxelize`; pass it unrounded to `trilinear_devoxelize`.
    """
    coords = _check_points("coords", coords)
    r = _check_positive_int("r", r)
    if not isinstance(normalize, bool):
        raise ValueError(f"normalize must be a bool, got {normalize!r}")
    eps = _check_number("eps", eps, minimum=0.0)
    return reference.voxel_coords(coords, r, normalize, eps)


def avg_voxelize(feat, vox_int, r):
    """Average the features of the points that fall into each voxel.

    feat: float[B,C,N] point features. vox_int: int32 or int64 [B,3,N], the voxel (x, y, z) of
    each point, every value in [0, r-1] (round `voxel_coords` output). r: grid resolution.

    Returns float[B,C,r,r,r] (dtype of feat): each voxel holds the mean feature of its points,
    empty voxels hold 0; the flat voxel index is x*r*r + y*r + z. Differentiable w.r.t. feat:
    each point receives the gradient of its voxel divided by the voxel's point count.
    Values outside [0, r-1] are not checked (that would stall the GPU) and are an error.
    """
    feat = _check_features("feat", feat)
    vox_int = _check_index("vox_int", vox_int)
    r = _check_positive_int("r", r)
    _check_shape("vox_int", vox_int, (feat.shape[0], 3, feat.shape[2]))
    _check_same_device(feat=feat, vox_int=vox_int)
    module = compiled_for(feat)
    if module is not None:
        return compiled_ops.avg_voxelize(module, feat, vox_int, r)
    return reference.avg_voxelize(feat, vox_int, r)


def trilinear_devoxelize(grid, vox, training=True):
    """Trilinearly interpolate a voxel grid at continuous voxel coordinates.

    grid: float[B,C,r,r,r] voxel features. vox: float[B,3,N] voxel coordinates in [0, r-1]
    (`voxel_coords` output). training: accepted for PVCNN call-site compatibility (PVCNN only
    keeps its backward buffers in training mode); here gradients reach `grid` whenever autograd
    records the call, whatever its value.

    Returns float[B,C,N] (dtype of grid). A coordinate with no fractional part takes its
    lower voxel alone, so r-1 stays inside the grid. Differentiable w.r.t. grid only.
    """
    grid = _check_tensor("grid", grid, dims=5, floating=True)
    if not (grid.shape[2] == grid.shape[3] == grid.shape[4]):
        raise ValueError(f"grid must be a cubic [B,C,r,r,r] grid, got shape {tuple(grid.shape)}")
    vox = _check_points("vox", vox)
    if not isinstance(training, bool):
        raise ValueError(f"training must be a bool, got {training!r}")
    _check_batch("vox", vox, grid.shape[0])
    _check_same_device(grid=grid, vox=vox)
    vox = vox.to(grid.dtype)
    module = compiled_for(grid)
    if module is not None:
        return compiled_ops.trilinear_devoxelize(module, grid, vox)
    return reference.trilinear_devoxelize(grid, vox)


def ball_query(centers, points, radius, K):
    """Neighbour indices of each center within a ball, PVCNN's ball query.

    centers: float[B,3,M]. points: float[B,3,N]. radius > 0. K >= 1 neighbours per center
    (K may exceed N).

    Returns int64[B,M,K]: the first K point indices, in index order, whose squared distance
    to the center is below radius²; unused slots repeat the first of them; a center with no
    point in its ball gets all zeros. Not differentiable (indices).
    """
    centers = _check_points("centers", centers)
    points = _check_points("points", points)
    radius = _check_number("radius", radius, minimum=0.0, strict=True)
    K = _check_positive_int("K", K)
    _check_batch("points", points, centers.shape[0])
    _check_same_device(centers=centers, points=points)
    points = points.to(centers.dtype)
    module = compiled_for(centers)
    if module is not None:
        return compiled_ops.ball_query(module, centers, points, radius, K)
    return reference.ball_query(centers, points, radius, K)


def grouping(feat, idx):
    """Gather the features of each center's neighbours.

    feat: float[B,C,N]. idx: int32 or int64 [B,M,K] with values in [0, N-1] (`ball_query`
    output; not range-checked, an index outside is an error).

    Returns float[B,C,M,K] (dtype of feat) with out[b,c,m,k] = feat[b,c,idx[b,m,k]].
    Differentiable w.r.t. feat (gradients of repeated indices add up).
    """
    feat = _check_features("feat", feat)
    idx = _check_index("idx", idx)
    _check_batch("idx", idx, feat.shape[0])
    _check_same_device(feat=feat, idx=idx)
    module = compiled_for(feat)
    if module is not None:
        return compiled_ops.grouping(module, feat, idx)
    return reference.grouping(feat, idx)


def furthest_point_sample(coords, M):
    """Indices of M points chosen by iterative furthest point sampling.

    coords: float[B,3,N]. M: 1 <= M <= N.

    Returns int64[B,M]: index 0 first, then repeatedly the point whose squared distance to the
    chosen set is largest (ties go to the lowest index). Not differentiable (indices).
    """
    coords = _check_points("coords", coords)
    M = _check_positive_int("M", M)
    if M > coords.shape[2]:
        raise ValueError(f"M must not exceed the number of points N={coords.shape[2]}, got {M}")
    module = compiled_for(coords)
    if module is not None:
        return compiled_ops.furthest_point_sample(module, coords, M)
    return reference.furthest_point_sample(coords, M)


def three_nn_interpolate(points, centers, cfeat):
    """Interpolate center features at points from their three nearest centers.

    points: float[B,3,N]. centers: float[B,3,M]. cfeat: float[B,C,M] center features.

    Returns float[B,C,N] (dtype of cfeat): the weighted sum over the three nearest centers
    (ordered by squared distance, then index) with weights proportional to 1/d², d² clamped to
    [1e-10, 1e10], normalized to sum 1. With M < 3 the missing neighbours count as center 0
    at d² = 1e10, as in PVCNN. Differentiable w.r.t. cfeat only.
    """
    points = _check_points("points", points)
    centers = _check_points("centers", centers)
    cfeat = _check_features("cfeat", cfeat)
    _check_batch("points", points, cfeat.shape[0])
    _check_shape("centers", centers, (cfeat.shape[0], 3, cfeat.shape[2]))
    _check_same_device(points=points, centers=centers, cfeat=cfeat)
    points, centers = points.to(cfeat.dtype), centers.to(cfeat.dtype)
    module = compiled_for(cfeat)
    if module is not None:
        return compiled_ops.three_nn_interpolate(module, points, centers, cfeat)
    return reference.three_nn_interpolate(points, centers, cfeat)


def _check_tensor(name, value, dims, floating):
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() != dims:
        raise ValueError(f"{name} must have {dims} dimensions, got shape {tuple(value.shape)}")
    if any(size == 0 for size in value.shape):
        raise ValueError(f"{name} must not be empty, got shape {tuple(value.shape)}")
    if floating:
        if value.dtype in _HALF_DTYPES:
            return value.float()
        if value.dtype not in _COMPUTE_DTYPES:
            raise ValueError(f"{name} must be a floating tensor (float32 or float64), got {value.dtype}")
    elif value.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"{name} must be an int32 or int64 tensor, got {value.dtype}")
    return value


def _check_points(name, value):
    value = _check_tensor(name, value, dims=3, floating=True)
    if value.shape[1] != 3:
        raise ValueError(f"{name} must have shape [B,3,N], got {tuple(value.shape)}")
    return value


def _check_features(name, value):
    return _check_tensor(name, value, dims=3, floating=True)


def _check_index(name, value):
    return _check_tensor(name, value, dims=3, floating=False)


def _check_shape(name, value, expected):
    if tuple(value.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {list(expected)}, got {list(value.shape)}")


def _check_batch(name, value, batch):
    if value.shape[0] != batch:
        raise ValueError(f"{name} must have batch size {batch}, got {value.shape[0]}")


def _check_same_device(**tensors):
    devices = {name: value.device for name, value in tensors.items()}
    first_name, first_device = next(iter(devices.items()))
    for name, device in devices.items():
        if device != first_device:
            raise ValueError(f"{name} is on {device} but {first_name} is on {first_device}")


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def _check_number(name, value, minimum, strict=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    too_small = value <= minimum if strict else value < minimum
    if too_small or value != value or value == float("inf"):
        bound = f"> {minimum}" if strict else f">= {minimum}"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return value
