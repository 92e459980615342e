"""Vectorized PyTorch twins of the point-voxel operators (PVCNN semantics).

These functions assume validated input (see `kernels.ops`, the public entry points) and run on
any device that PyTorch supports, in float32 or float64. Gradients flow exactly where PVCNN's
operators pass them: into features and voxel grids, never into coordinates.

Squared distances are always accumulated as ``(dx*dx + dy*dy) + dz*dz`` in the input dtype,
the same order of roundings the CUDA kernels use (they are compiled without fused
multiply-add), so neighbour choices agree bit for bit between the two paths.
"""
import torch

# Pairwise-distance blocks are computed a slice at a time so that B*M*N work at LION sizes
# (B=32, M=1024, N=2048) does not need gigabytes at once.
_MAX_BLOCK_ELEMENTS = 1 << 24

# PVCNN's three-NN clamps squared distances into this range before inverting them.
_MIN_SQUARED_DISTANCE = 1e-10
_MAX_SQUARED_DISTANCE = 1e10


def voxel_coords(coords, r, normalize, eps):
    """Continuous voxel coordinates in [0, r-1] of points coords[B,3,N]; detached, same dtype."""
    coords = coords.detach()
    centred = coords - coords.mean(dim=2, keepdim=True)
    if normalize:
        scale = centred.norm(dim=1, keepdim=True).amax(dim=2, keepdim=True) * 2.0 + eps
        # A shape whose points all coincide would divide 0 by 0; PVCNN yields NaN there, we
        # put such points at the grid centre.
        scale = torch.where(scale == 0, torch.ones_like(scale), scale)
        unit = centred / scale + 0.5
    else:
        unit = (centred + 1.0) / 2.0
    return torch.clamp(unit * r, 0, r - 1)


def avg_voxelize(feat, vox_int, r):
    """Average the features feat[B,C,N] of the points in each voxel: -> [B,C,r,r,r]."""
    batch, channels, points = feat.shape
    cells = r * r * r
    vox = vox_int.long()
    # One row per (shape, voxel) so that index_add moves whole C-vectors at once.
    row = (vox[:, 0] * (r * r) + vox[:, 1] * r + vox[:, 2]
           + torch.arange(batch, device=feat.device).unsqueeze(1) * cells).reshape(-1)
    counts = torch.zeros(batch * cells, dtype=feat.dtype, device=feat.device)
    counts.index_add_(0, row, torch.ones(batch * points, dtype=feat.dtype, device=feat.device))
    # Each point contributes feature / count, as PVCNN's kernel does, so the backward pass
    # hands every point grad / count of its voxel.
    point_weight = 1.0 / counts[row]
    contributions = feat.transpose(1, 2).reshape(batch * points, channels) * point_weight.unsqueeze(1)
    out = torch.zeros(batch * cells, channels, dtype=feat.dtype, device=feat.device)
    out = out.index_add(0, row, contributions)
    # contiguous(): a channels-last view would send the grid through PyTorch's channels-last
    # CPU kernels (GroupNorm's among them), which round differently from the official models.
    return out.view(batch, cells, channels).transpose(1, 2).contiguous().view(batch, channels, r, r, r)


def devoxelize_corners(vox, r):
    """Flat indices and weights of the 8 grid corners around each point vox[B,3,N].

    Returns (index int64[B,8,N], weight[B,8,N]); corner order is 000, 001, ..., 111 in
    (x, y, z) bits. A coordinate with no fractional part uses its lower corner twice (with
    weight 0 on the upper one), which keeps points at r-1 inside the grid, as in PVCNN.
    """
    vox = vox.detach()
    low = torch.floor(vox)
    upper_weight = vox - low
    lower_weight = 1.0 - upper_weight
    low_index = low.long()
    step = (upper_weight > 0).long()
    x_lo, y_lo, z_lo = low_index[:, 0], low_index[:, 1], low_index[:, 2]
    x_step, y_step, z_step = step[:, 0] * (r * r), step[:, 1] * r, step[:, 2]
    base = x_lo * (r * r) + y_lo * r + z_lo
    indices, weights = [], []
    for x_bit in (0, 1):
        wx = (upper_weight if x_bit else lower_weight)[:, 0]
        for y_bit in (0, 1):
            wy = (upper_weight if y_bit else lower_weight)[:, 1]
            for z_bit in (0, 1):
                wz = (upper_weight if z_bit else lower_weight)[:, 2]
                weights.append(wx * wy * wz)
                indices.append(base + x_bit * x_step + y_bit * y_step + z_bit * z_step)
    return torch.stack(indices, dim=1), torch.stack(weights, dim=1)


def trilinear_devoxelize(grid, vox):
    """Trilinearly sample grid[B,C,r,r,r] at continuous voxel coordinates vox[B,3,N] -> [B,C,N]."""
    batch, channels, r = grid.shape[:3]
    points = vox.shape[2]
    index, weight = devoxelize_corners(vox, r)
    flat = grid.reshape(batch, channels, r * r * r)
    corners = flat.gather(2, index.view(batch, 1, 8 * points).expand(-1, channels, -1))
    corners = corners.view(batch, channels, 8, points)
    return (corners * weight.unsqueeze(1)).sum(dim=2)


def _squared_distances(queries, targets):
    """(dx*dx + dy*dy) + dz*dz between detached queries[B,3,Q] and targets[B,3,T] -> [B,Q,T]."""
    # In-place steps: at LION sizes allocating each intermediate costs more than the math.
    d2 = queries[:, 0, :, None] - targets[:, 0, None, :]
    d2.mul_(d2)
    diff = torch.empty_like(d2)
    for axis in (1, 2):
        torch.sub(queries[:, axis, :, None], targets[:, axis, None, :], out=diff)
        d2.add_(diff.mul_(diff))
    return d2


def _query_blocks(num_queries, num_targets, batch):
    rows = max(1, _MAX_BLOCK_ELEMENTS // max(1, num_targets * batch))
    return [(start, min(num_queries, start + rows)) for start in range(0, num_queries, rows)]


def ball_query(centers, points, radius, K):
    """First K point indices (index order) within radius of each center -> int64[B,M,K].

    Unused slots repeat the first hit; a center with no point in its ball gets all zeros.
    """
    centers, points = centers.detach(), points.detach()
    batch, _, num_centers = centers.shape
    num_points = points.shape[2]
    radius_sq = radius * radius
    out = torch.empty(batch, num_centers, K, dtype=torch.long, device=points.device)
    slot_number = torch.arange(K, device=points.device)
    for start, stop in _query_blocks(num_centers, num_points, batch):
        inside = _squared_distances(centers[:, :, start:stop], points) < radius_sq
        rank = torch.cumsum(inside, dim=2, dtype=torch.int32)
        # At most K hits per center survive, so this list stays small whatever the radius.
        b, m, n = (inside & (rank <= K)).nonzero(as_tuple=True)
        hits = torch.zeros(batch, stop - start, K, dtype=torch.long, device=points.device)
        hits[b, m, rank[b, m, n].long() - 1] = n
        found = rank[:, :, -1:].clamp(max=K)
        out[:, start:stop] = torch.where(slot_number < found, hits, hits[:, :, :1])
    return out


def grouping(feat, idx):
    """Gather feat[B,C,N] at idx[B,M,K] -> [B,C,M,K]."""
    batch, channels, _ = feat.shape
    _, num_centers, K = idx.shape
    flat_index = idx.long().reshape(batch, 1, num_centers * K).expand(-1, channels, -1)
    return feat.gather(2, flat_index).view(batch, channels, num_centers, K)


def furthest_point_sample(coords, M):
    """Indices int64[B,M] of furthest point sampling of coords[B,3,N], starting at index 0.

    Ties go to the lowest index.
    """
    coords = coords.detach()
    batch, _, num_points = coords.shape
    picks = torch.zeros(batch, M, dtype=torch.long, device=coords.device)
    distance = torch.full((batch, num_points), float("inf"), dtype=coords.dtype, device=coords.device)
    last = torch.zeros(batch, 1, 1, dtype=torch.long, device=coords.device)
    for step in range(1, M):
        last_point = coords.gather(2, last.expand(-1, 3, -1))
        distance = torch.minimum(distance, _squared_distances(last_point, coords)[:, 0])
        picks[:, step] = distance.argmax(dim=1)
        last = picks[:, step].view(batch, 1, 1)
    return picks


def three_nn(points, centers):
    """Three nearest centers of each point and their interpolation weights.

    points[B,3,N], centers[B,3,M] -> (index int64[B,3,N], weight[B,3,N]). Neighbours are
    ordered by (squared distance, index); fewer than 3 centers leave slots at index 0 with
    squared distance 1e10, as PVCNN's kernel does. Weights are 1/d² (d² clamped to
    [1e-10, 1e10]) normalized to sum 1, computed in PVCNN's product form.
    """
    points, centers = points.detach(), centers.detach()
    batch, _, num_points = points.shape
    num_centers = centers.shape[2]
    index = torch.zeros(batch, 3, num_points, dtype=torch.long, device=points.device)
    d2 = torch.full((batch, 3, num_points), _MAX_SQUARED_DISTANCE, dtype=points.dtype, device=points.device)
    for start, stop in _query_blocks(num_points, num_centers, batch):
        block = _squared_distances(points[:, :, start:stop], centers)
        for slot in range(min(3, num_centers)):
            # argmin returns the first minimum, which orders equal distances by index.
            nearest = block.argmin(dim=2, keepdim=True)
            d2[:, slot, start:stop] = block.gather(2, nearest)[:, :, 0]
            index[:, slot, start:stop] = nearest[:, :, 0]
            block.scatter_(2, nearest, float("inf"))
    d2 = d2.clamp(_MIN_SQUARED_DISTANCE, _MAX_SQUARED_DISTANCE)
    d0, d1, d2_ = d2[:, 0], d2[:, 1], d2[:, 2]
    d0d1, d0d2, d1d2 = d0 * d1, d0 * d2_, d1 * d2_
    inverse_total = 1.0 / (d0d1 + d0d2 + d1d2)
    weight = torch.stack((d1d2 * inverse_total, d0d2 * inverse_total, d0d1 * inverse_total), dim=1)
    return index, weight


def three_nn_interpolate(points, centers, cfeat):
    """Interpolate center features cfeat[B,C,M] at points[B,3,N] from their 3 nearest centers -> [B,C,N]."""
    batch, channels, _ = cfeat.shape
    num_points = points.shape[2]
    index, weight = three_nn(points, centers)
    neighbours = cfeat.gather(2, index.view(batch, 1, 3 * num_points).expand(-1, channels, -1))
    neighbours = neighbours.view(batch, channels, 3, num_points)
    return (neighbours * weight.unsqueeze(1)).sum(dim=2)
