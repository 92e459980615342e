"""The point-voxel operators against brute-force loops, forward and backward, on both CPU
paths: the vectorized PyTorch reference and the compiled C++ operators (every test runs once
on each, through the `kernel_path` fixture).

Each `_naive_*` twin below spells PVCNN's semantics out point by point in plain Python; the
inputs are tiny and awkward (a single point, fewer points than neighbours, as many centers as
points, points exactly on voxel borders, clustered and duplicated points, empty balls).
"""
import itertools
import logging
import math

import pytest
import torch

from kernels import ops

F64 = torch.float64


@pytest.fixture(autouse=True)
def _every_path(kernel_path):
    """Every test of this module runs on the reference and on the compiled CPU operators."""


def _generator(seed):
    return torch.Generator().manual_seed(seed)


def _cloud(batch, count, seed, scale=1.0):
    return (torch.rand(batch, 3, count, generator=_generator(seed), dtype=F64) * 2 - 1) * scale


def _sqdist(a, b):
    dx, dy, dz = a[0] - b[0], a[1] - b[1], a[2] - b[2]
    return dx * dx + dy * dy + dz * dz


def _column(points, b, n):
    return [float(points[b, axis, n]) for axis in range(3)]


# --- brute-force twins ---------------------------------------------------------------------

def _naive_voxel_coords(coords, r, normalize, eps):
    batch, _, count = coords.shape
    out = torch.zeros_like(coords)
    for b in range(batch):
        mean = [sum(float(coords[b, a, n]) for n in range(count)) / count for a in range(3)]
        centred = [[float(coords[b, a, n]) - mean[a] for a in range(3)] for n in range(count)]
        scale = max(math.sqrt(sum(v * v for v in p)) for p in centred) * 2 + eps
        for n, p in enumerate(centred):
            for a in range(3):
                unit = (p[a] / scale + 0.5) if normalize else (p[a] + 1) / 2
                out[b, a, n] = min(max(unit * r, 0.0), r - 1.0)
    return out


def _naive_avg_voxelize(feat, vox, r):
    batch, channels, count = feat.shape
    out = torch.zeros(batch, channels, r, r, r, dtype=feat.dtype)
    for b in range(batch):
        members = {}
        for n in range(count):
            members.setdefault(tuple(int(v) for v in vox[b, :, n]), []).append(n)
        for cell, points in members.items():
            for c in range(channels):
                out[b, c][cell] = sum(float(feat[b, c, n]) for n in points) / len(points)
    return out


def _naive_devoxelize(grid, vox):
    batch, channels, r = grid.shape[:3]
    count = vox.shape[2]
    out = torch.zeros(batch, channels, count, dtype=grid.dtype)
    for b, n in itertools.product(range(batch), range(count)):
        p = _column(vox, b, n)
        low = [math.floor(v) for v in p]
        frac = [v - lo for v, lo in zip(p, low)]
        for bits in itertools.product((0, 1), repeat=3):
            weight = 1.0
            corner = []
            for axis, bit in enumerate(bits):
                weight *= frac[axis] if bit else 1 - frac[axis]
                corner.append(low[axis] + (bit if frac[axis] > 0 else 0))
            for c in range(channels):
                out[b, c, n] += weight * float(grid[b, c][tuple(corner)])
    return out


def _naive_ball_query(centers, points, radius, K):
    batch, _, num_centers = centers.shape
    out = torch.zeros(batch, num_centers, K, dtype=torch.long)
    for b, m in itertools.product(range(batch), range(num_centers)):
        center = _column(centers, b, m)
        hits = [n for n in range(points.shape[2]) if _sqdist(center, _column(points, b, n)) < radius * radius]
        hits = hits[:K]
        if hits:
            out[b, m] = torch.tensor(hits + [hits[0]] * (K - len(hits)))
    return out


def _naive_grouping(feat, idx):
    batch, channels, _ = feat.shape
    _, num_centers, K = idx.shape
    out = torch.zeros(batch, channels, num_centers, K, dtype=feat.dtype)
    for b, c, m, k in itertools.product(range(batch), range(channels), range(num_centers), range(K)):
        out[b, c, m, k] = feat[b, c, idx[b, m, k]]
    return out


def _naive_fps(coords, M):
    batch, _, count = coords.shape
    out = torch.zeros(batch, M, dtype=torch.long)
    for b in range(batch):
        points = [_column(coords, b, n) for n in range(count)]
        distance = [math.inf] * count
        last = 0
        for step in range(1, M):
            distance = [min(d, _sqdist(points[last], p)) for d, p in zip(distance, points)]
            last = max(range(count), key=lambda n: (distance[n], -n))
            out[b, step] = last
    return out


def _naive_three_nn_interpolate(points, centers, cfeat):
    batch, channels, num_centers = cfeat.shape
    count = points.shape[2]
    out = torch.zeros(batch, channels, count, dtype=cfeat.dtype)
    for b, n in itertools.product(range(batch), range(count)):
        p = _column(points, b, n)
        ranked = sorted((_sqdist(p, _column(centers, b, m)), m) for m in range(num_centers))[:3]
        ranked += [(1e10, 0)] * (3 - len(ranked))
        inverse = [1.0 / min(max(d, 1e-10), 1e10) for d, _ in ranked]
        for (_, m), w in zip(ranked, inverse):
            for c in range(channels):
                out[b, c, n] += w / sum(inverse) * float(cfeat[b, c, m])
    return out


# --- voxel_coords --------------------------------------------------------------------------

@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("count", [1, 2, 7])
def test_voxel_coords_matches_naive(normalize, count):
    coords = _cloud(2, count, seed=count)
    got = ops.voxel_coords(coords, 8, normalize=normalize, eps=1e-4 if normalize else 0.0)
    if count == 1 and normalize:
        # A single point is the only (mean-centred) point: it sits at the grid centre.
        assert torch.equal(got, torch.full_like(coords, 4.0))
        return
    torch.testing.assert_close(got, _naive_voxel_coords(coords, 8, normalize, 1e-4 if normalize else 0.0))


def test_voxel_coords_keeps_extreme_points_inside_grid():
    coords = torch.tensor([[[-1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]], dtype=F64)
    got = ops.voxel_coords(coords, 4, normalize=True)
    assert got.min() >= 0 and got.max() <= 3
    # Farthest point (distance 1 from the mean) maps to 4 * (±0.5 + 0.5), clamped to r-1.
    assert got[0, 0].tolist() == [0.0, 3.0, 2.0]


def test_voxel_coords_is_detached():
    coords = _cloud(1, 5, seed=1).requires_grad_()
    assert not ops.voxel_coords(coords, 8).requires_grad


# --- avg_voxelize --------------------------------------------------------------------------

@pytest.mark.parametrize("count", [1, 3, 40])
def test_avg_voxelize_matches_naive(count):
    r = 3
    # 40 points in a 27-cell grid forces shared voxels; values exactly on the borders 0 and r-1.
    vox = torch.randint(0, r, (2, 3, count), generator=_generator(count))
    feat = torch.randn(2, 4, count, generator=_generator(count + 1), dtype=F64)
    torch.testing.assert_close(ops.avg_voxelize(feat, vox, r), _naive_avg_voxelize(feat, vox, r))


def test_avg_voxelize_clustered_points_average_and_empty_cells_are_zero():
    feat = torch.tensor([[[1.0, 2.0, 3.0, 10.0]]], dtype=F64)
    vox = torch.tensor([[[1, 1, 1, 0], [0, 0, 0, 1], [1, 1, 1, 1]]], dtype=torch.int32)
    out = ops.avg_voxelize(feat, vox, 2)
    assert out[0, 0, 1, 0, 1] == 2.0 and out[0, 0, 0, 1, 1] == 10.0
    assert out.abs().sum() == 12.0


def test_avg_voxelize_gradient():
    vox = torch.randint(0, 2, (2, 3, 9), generator=_generator(3))
    feat = torch.randn(2, 3, 9, generator=_generator(4), dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: ops.avg_voxelize(f, vox, 2), (feat,))


def test_avg_voxelize_gradient_is_voxel_gradient_over_count():
    feat = torch.zeros(1, 1, 3, dtype=F64, requires_grad=True)
    vox = torch.tensor([[[0, 0, 1], [0, 0, 1], [0, 0, 1]]])
    ops.avg_voxelize(feat, vox, 2)[0, 0, 0, 0, 0].backward()
    assert feat.grad.tolist() == [[[0.5, 0.5, 0.0]]]


# --- trilinear_devoxelize ------------------------------------------------------------------

def test_trilinear_devoxelize_matches_naive_on_borders_and_inside():
    r = 4
    grid = torch.randn(2, 3, r, r, r, generator=_generator(5), dtype=F64)
    inside = torch.rand(2, 3, 6, generator=_generator(6), dtype=F64) * (r - 1)
    borders = torch.tensor([[0.0, r - 1.0, 2.0, 1.5, r - 1.0], [0.0, r - 1.0, 1.0, 0.0, 0.5],
                            [0.0, r - 1.0, 3.0, r - 1.0, 2.0]], dtype=F64).expand(2, -1, -1)
    vox = torch.cat([inside, borders], dim=2)
    torch.testing.assert_close(ops.trilinear_devoxelize(grid, vox, True), _naive_devoxelize(grid, vox))


def test_trilinear_devoxelize_at_integer_coordinates_reads_the_voxel():
    grid = torch.randn(1, 2, 3, 3, 3, generator=_generator(7), dtype=F64)
    vox = torch.tensor([[[2.0], [1.0], [0.0]]], dtype=F64)
    assert torch.equal(ops.trilinear_devoxelize(grid, vox, False)[0, :, 0], grid[0, :, 2, 1, 0])


def test_trilinear_devoxelize_gradient_reaches_grid_only():
    grid = torch.randn(2, 2, 3, 3, 3, generator=_generator(8), dtype=F64, requires_grad=True)
    vox = (torch.rand(2, 3, 5, generator=_generator(9), dtype=F64) * 2).requires_grad_()
    assert torch.autograd.gradcheck(lambda g: ops.trilinear_devoxelize(g, vox, True), (grid,))
    ops.trilinear_devoxelize(grid, vox, True).sum().backward()
    assert vox.grad is None


def test_voxelize_then_devoxelize_round_trip_of_a_constant_field():
    coords = _cloud(2, 64, seed=10)
    vox = ops.voxel_coords(coords, 8)
    feat = torch.ones(2, 1, 64, dtype=F64)
    grid = ops.avg_voxelize(feat, torch.round(vox).long(), 8)
    back = ops.trilinear_devoxelize(grid, vox, False)
    assert back.min() >= 0 and back.max() <= 1 + 1e-12


# --- ball_query ----------------------------------------------------------------------------

@pytest.mark.parametrize("count,num_centers,K", [(1, 1, 1), (3, 2, 8), (12, 5, 4), (12, 12, 12)])
def test_ball_query_matches_naive(count, num_centers, K):
    points = _cloud(2, count, seed=count)
    centers = _cloud(2, num_centers, seed=count + 100)
    for radius in (0.1, 0.7, 5.0):
        assert torch.equal(ops.ball_query(centers, points, radius, K), _naive_ball_query(centers, points, radius, K))


def test_ball_query_pads_with_first_hit_and_empty_ball_is_zero():
    points = torch.tensor([[[5.0, 0.0, 9.0, 0.1, 0.2], [0.0] * 5, [0.0] * 5]])
    centers = torch.tensor([[[0.0, 50.0], [0.0, 0.0], [0.0, 0.0]]])
    got = ops.ball_query(centers, points, 0.5, 4)
    assert got.dtype == torch.int64
    assert got.tolist() == [[[1, 3, 4, 1], [0, 0, 0, 0]]]


def test_ball_query_radius_is_strict():
    points = torch.tensor([[[1.0, 0.5], [0.0, 0.0], [0.0, 0.0]]])
    centers = torch.zeros(1, 3, 1)
    assert ops.ball_query(centers, points, 1.0, 2).tolist() == [[[1, 1]]]


def test_ball_query_clustered_points_keep_index_order():
    points = torch.zeros(1, 3, 50, dtype=F64)
    centers = torch.zeros(1, 3, 1, dtype=F64)
    assert ops.ball_query(centers, points, 0.1, 32)[0, 0].tolist() == list(range(32))


# --- grouping ------------------------------------------------------------------------------

def test_grouping_matches_naive_and_gradient_adds_repeats():
    feat = torch.randn(2, 3, 4, generator=_generator(11), dtype=F64, requires_grad=True)
    idx = torch.tensor([[[0, 0, 3], [2, 2, 2]], [[1, 0, 1], [3, 3, 0]]], dtype=torch.int32)
    torch.testing.assert_close(ops.grouping(feat, idx), _naive_grouping(feat.detach(), idx))
    assert torch.autograd.gradcheck(lambda f: ops.grouping(f, idx), (feat,))
    ops.grouping(feat, idx).sum().backward()
    assert feat.grad[0, 0].tolist() == [2.0, 0.0, 3.0, 1.0]


# --- furthest_point_sample -----------------------------------------------------------------

@pytest.mark.parametrize("count,M", [(1, 1), (2, 2), (9, 4), (16, 16)])
def test_furthest_point_sample_matches_naive(count, M):
    coords = _cloud(3, count, seed=count + 200)
    got = ops.furthest_point_sample(coords, M)
    assert got.dtype == torch.int64
    assert torch.equal(got, _naive_fps(coords, M))


def test_furthest_point_sample_starts_at_zero_and_breaks_ties_by_lowest_index():
    # Duplicated points: every distance ties twice; M = N visits duplicates last.
    base = torch.tensor([[0.0, 1.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]], dtype=F64)
    coords = torch.cat([base, base], dim=1).unsqueeze(0)
    got = ops.furthest_point_sample(coords, 8)
    assert torch.equal(got, _naive_fps(coords, 8))
    assert got[0, :4].tolist() == [0, 3, 1, 2]


# --- three_nn_interpolate ------------------------------------------------------------------

@pytest.mark.parametrize("count,num_centers", [(1, 1), (5, 2), (6, 3), (9, 9), (13, 7)])
def test_three_nn_interpolate_matches_naive(count, num_centers):
    points = _cloud(2, count, seed=count + 300)
    centers = _cloud(2, num_centers, seed=count + 400)
    cfeat = torch.randn(2, 3, num_centers, generator=_generator(count), dtype=F64)
    torch.testing.assert_close(ops.three_nn_interpolate(points, centers, cfeat),
                               _naive_three_nn_interpolate(points, centers, cfeat))


def test_three_nn_interpolate_points_on_centers_and_equidistant_centers():
    # Point 0 sits on center 1; point 1 is equidistant from centers 0, 2, 3 and 4, so the tie
    # is broken by index and center 4 is left out.
    centers = torch.tensor([[[1.0, 0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0, -1.0],
                             [0.0, 5.0, 0.0, 0.0, 0.0]]], dtype=F64)
    points = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [5.0, 0.0]]], dtype=F64)
    cfeat = torch.tensor([[[1.0, 10.0, 100.0, 1000.0, 10000.0]]], dtype=F64)
    got = ops.three_nn_interpolate(points, centers, cfeat)
    torch.testing.assert_close(got, _naive_three_nn_interpolate(points, centers, cfeat))
    assert abs(float(got[0, 0, 0]) - 10.0) < 1e-6
    assert abs(float(got[0, 0, 1]) - 367.0) < 1e-9


def test_three_nn_interpolate_gradient_reaches_center_features_only():
    points = _cloud(2, 7, seed=12).requires_grad_()
    centers = _cloud(2, 5, seed=13).requires_grad_()
    cfeat = torch.randn(2, 3, 5, generator=_generator(14), dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: ops.three_nn_interpolate(points, centers, f), (cfeat,))
    ops.three_nn_interpolate(points, centers, cfeat).sum().backward()
    assert points.grad is None and centers.grad is None


# --- dtypes, chunking and reporting --------------------------------------------------------

def test_float32_and_half_inputs():
    points = _cloud(1, 20, seed=15).float()
    cfeat = torch.randn(1, 2, 6, generator=_generator(16))
    centers = points[:, :, :6]
    out32 = ops.three_nn_interpolate(points, centers, cfeat)
    assert out32.dtype == torch.float32
    halves = [t.half() for t in (points, centers, cfeat)]
    out_half = ops.three_nn_interpolate(*halves)
    assert out_half.dtype == torch.float32
    assert torch.equal(out_half, ops.three_nn_interpolate(*[t.float() for t in halves]))


def test_large_inputs_are_processed_in_blocks(monkeypatch):
    from kernels import reference

    points = _cloud(2, 40, seed=17)
    centers = points[:, :, :10]
    cfeat = torch.randn(2, 3, 10, generator=_generator(18), dtype=F64)
    whole_ball = ops.ball_query(centers, points, 0.6, 5)
    whole_interp = ops.three_nn_interpolate(points, centers, cfeat)
    monkeypatch.setattr(reference, "_MAX_BLOCK_ELEMENTS", 50)
    assert torch.equal(ops.ball_query(centers, points, 0.6, 5), whole_ball)
    torch.testing.assert_close(ops.three_nn_interpolate(points, centers, cfeat), whole_interp)


def test_implementation_info_on_a_machine_without_cuda_names_the_reference(caplog):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with caplog.at_level(logging.INFO, logger="lion.kernels"):
        info = ops.implementation_info()
    assert info["cuda"] == "reference" and info["cuda_reason"]
    assert info["cpu"] in ("compiled", "reference") and info["cpu_reason"]
    assert info["reason"] and info["cuda_device"] is False
    assert isinstance(info["cache_dir"], str)
