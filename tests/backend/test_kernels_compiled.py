"""The compiled point-voxel operators (CPU always, CUDA where a device is present) agree with
the reference at LION's sizes, in float32 and float64, and the CUDA sources compile.

Sizes follow LION: N = 2048 points, grids 8/16/32, K = 32, the four set-abstraction stages'
centers and radii. Neighbour and sample indices must match exactly (all paths round squared
distances the same way); features match up to summation order. The brute-force checks on tiny,
awkward inputs are in test_kernels_reference.py, which runs on the compiled CPU path too.
"""
import shutil
import time

import pytest
import torch

from kernels import compiled_ops, extension, ops, reference

POINTS = 2048
# (centers, radius) of LION's four set-abstraction stages, on shapes normalized to [-1, 1].
SA_STAGES = [(1024, 0.1), (256, 0.2), (64, 0.4), (16, 0.8)]


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
def test_cuda_sources_compile(tmp_path):
    from kernels.compile import compile_objects

    started = time.perf_counter()
    objects = compile_objects(str(tmp_path))
    assert sorted(p.rsplit("/", 1)[-1] for p in objects) == ["bindings.o", "point_voxel.o", "point_voxel_cpu.o"]
    print(f"compiled the CUDA build's sources to objects in {time.perf_counter() - started:.1f} s")


# (device, batch): the CPU runs one awkward batch size, as the reference is slow there.
TARGETS = [("cpu", 3), pytest.param(("cuda", 4), marks=pytest.mark.cuda),
           pytest.param(("cuda", 32), marks=pytest.mark.cuda)]


@pytest.fixture(params=TARGETS, ids=lambda target: f"{target[0]}-B{target[1]}")
def target(request):
    return request.param


@pytest.fixture
def device(target):
    return target[0]


@pytest.fixture
def batch(target):
    return target[1]


@pytest.fixture
def compiled(device, request):
    """The compiled extension for `device`."""
    if device == "cpu":
        return request.getfixturevalue("cpu_kernels")
    module = extension._load("cuda", allow_build=True)
    assert module is not None, extension.implementation_info()["cuda_reason"]
    return module


def _shapes(batch, seed, device, dtype=torch.float32):
    g = torch.Generator(device=device).manual_seed(seed)
    # Clustered shapes: points around a few centres, like parts of an object.
    anchors = torch.rand(batch, 3, 8, generator=g, device=device, dtype=dtype) * 1.6 - 0.8
    pick = torch.randint(0, 8, (batch, 1, POINTS), generator=g, device=device).expand(-1, 3, -1)
    return anchors.gather(2, pick) + 0.15 * torch.randn(batch, 3, POINTS, generator=g, device=device, dtype=dtype)


def _grad(shape, seed, device, dtype=torch.float32):
    g = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(*shape, generator=g, device=device, dtype=dtype)


def _forward_backward(fn, inputs, differentiable, grad_seed):
    leaves = [t.detach().clone().requires_grad_(i in differentiable) for i, t in enumerate(inputs)]
    out = fn(*leaves)
    assert out.is_contiguous()
    out.backward(_grad(out.shape, grad_seed, out.device.type, out.dtype))
    return out.detach(), [leaves[i].grad for i in differentiable]


def _assert_same_op(compiled_fn, reference_fn, inputs, differentiable, tol):
    got, got_grads = _forward_backward(compiled_fn, inputs, differentiable, grad_seed=7)
    want, want_grads = _forward_backward(reference_fn, inputs, differentiable, grad_seed=7)
    torch.testing.assert_close(got, want, atol=tol, rtol=tol)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, atol=tol, rtol=tol)


TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("r", [8, 16, 32])
def test_voxelize_and_devoxelize_match_reference(compiled, device, batch, r, dtype):
    coords = _shapes(batch, seed=r, device=device, dtype=dtype)
    vox = ops.voxel_coords(coords, r)
    vox_int = torch.round(vox).int()
    feat = _grad((batch, 64, POINTS), seed=1, device=device, dtype=dtype)
    _assert_same_op(lambda f: compiled_ops.avg_voxelize(compiled, f, vox_int, r),
                    lambda f: reference.avg_voxelize(f, vox_int, r), [feat], [0], tol=TOLERANCE[dtype])
    grid = _grad((batch, 64, r, r, r), seed=2, device=device, dtype=dtype)
    _assert_same_op(lambda g: compiled_ops.trilinear_devoxelize(compiled, g, vox),
                    lambda g: reference.trilinear_devoxelize(g, vox), [grid], [0], tol=TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sampling_and_grouping_match_reference(compiled, device, batch, dtype):
    coords = _shapes(batch, seed=batch, device=device, dtype=dtype)
    points, feat = coords, _grad((batch, 64, POINTS), seed=3, device=device, dtype=dtype)
    for num_centers, radius in SA_STAGES:
        picks = compiled_ops.furthest_point_sample(compiled, points, num_centers)
        assert torch.equal(picks, reference.furthest_point_sample(points, num_centers))
        centers = points.gather(2, picks.unsqueeze(1).expand(-1, 3, -1))
        idx = compiled_ops.ball_query(compiled, centers, points, radius, 32)
        assert torch.equal(idx, reference.ball_query(centers, points, radius, 32))
        _assert_same_op(lambda f: compiled_ops.grouping(compiled, f, idx), lambda f: reference.grouping(f, idx),
                        [feat], [0], tol=TOLERANCE[dtype])
        cfeat = _grad((batch, 64, num_centers), seed=num_centers, device=device, dtype=dtype)
        _assert_same_op(lambda c: compiled_ops.three_nn_interpolate(compiled, points, centers, c),
                        lambda c: reference.three_nn_interpolate(points, centers, c), [cfeat], [0],
                        tol=TOLERANCE[dtype])
        assert torch.equal(compiled.three_nn(points.contiguous(), centers.contiguous())[0].long(),
                           reference.three_nn(points, centers)[0])
        points, feat = centers, _grad((batch, 64, num_centers), seed=num_centers + 1, device=device, dtype=dtype)


def test_float64_awkward_sizes_match_reference(compiled, device):
    coords = _shapes(2, seed=5, device=device, dtype=torch.float64)[:, :, :37]
    picks = compiled_ops.furthest_point_sample(compiled, coords, 37)
    assert torch.equal(picks, reference.furthest_point_sample(coords, 37))
    centers = coords[:, :, :2]
    assert torch.equal(compiled_ops.ball_query(compiled, centers, coords, 0.05, 64),
                       reference.ball_query(centers, coords, 0.05, 64))
    cfeat = _grad((2, 5, 2), seed=6, device=device, dtype=torch.float64)
    _assert_same_op(lambda c: compiled_ops.three_nn_interpolate(compiled, coords, centers, c),
                    lambda c: reference.three_nn_interpolate(coords, centers, c), [cfeat], [0], tol=1e-12)
    vox = ops.voxel_coords(coords, 3)
    grid = _grad((2, 5, 3, 3, 3), seed=8, device=device, dtype=torch.float64)
    _assert_same_op(lambda g: compiled_ops.trilinear_devoxelize(compiled, g, vox),
                    lambda g: reference.trilinear_devoxelize(g, vox), [grid], [0], tol=1e-12)


def test_furthest_point_sample_of_many_points_matches_reference(compiled, device):
    # On the GPU, 5000 points no longer fit in shared memory.
    g = torch.Generator(device=device).manual_seed(9)
    coords = torch.rand(2, 3, 5000, generator=g, device=device)
    assert torch.equal(compiled_ops.furthest_point_sample(compiled, coords, 300),
                       reference.furthest_point_sample(coords, 300))


def test_public_ops_run_the_compiled_operators(compiled, device, monkeypatch):
    calls = []
    monkeypatch.setattr(compiled_ops, "ball_query", lambda *args: calls.append("ball_query") or
                        reference.ball_query(*args[1:]))
    monkeypatch.setattr(extension, "_modules", {device: compiled})
    coords = _shapes(2, seed=10, device=device)
    out = ops.grouping(coords, ops.ball_query(coords[:, :, :16], coords, 0.2, 8))
    assert calls == ["ball_query"]
    assert out.shape == (2, 3, 16, 8) and out.device.type == device


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nearest_searches_match_reference_across_scan_blocks(compiled, device, dtype):
    """The CPU scans candidates in blocks of 64 and skips blocks with none near enough
    (kernels/csrc/point_voxel_cpu.cpp): sizes that are no multiple of 64, hits in the last
    partial block only, equal distances in different blocks, balls holding nothing, one point
    or all of them."""
    g = torch.Generator().manual_seed(11)
    points = (torch.rand(3, 3, 200, generator=g, dtype=torch.float64) * 2 - 1).to(device, dtype)
    points[0, :, 190:] = points[0, :, 7:8]  # a cluster at the end, and its twin in the first block
    centers = points[:, :, 5:136].clone()  # 131 centers, each on a point
    centers[:, :, 64] = centers[:, :, 3]  # the same center in three blocks: ties at equal distance
    centers[:, :, 128] = centers[:, :, 3]
    for radius, neighbours in ((1e-3, 4), (0.05, 8), (0.3, 32), (4.0, 64)):
        assert torch.equal(compiled_ops.ball_query(compiled, centers, points, radius, neighbours),
                           reference.ball_query(centers, points, radius, neighbours))
    for queries, sources in ((points, centers), (centers, points), (points, points[:, :, 150:])):
        assert torch.equal(compiled.three_nn(queries.contiguous(), sources.contiguous())[0].long(),
                           reference.three_nn(queries, sources)[0])
        cfeat = _grad((3, 5, sources.shape[2]), seed=4, device=device, dtype=dtype)
        _assert_same_op(lambda c: compiled_ops.three_nn_interpolate(compiled, queries, sources, c),
                        lambda c: reference.three_nn_interpolate(queries, sources, c), [cfeat], [0],
                        tol=TOLERANCE[dtype])


def _cloud(kind, count, g):
    """[3, count] float64 centers of one kind, in shuffled index order."""
    if kind == "lattice":  # integer lattice: many centers at exactly equal distances
        side = max(1, round(count ** (1 / 3)))
        axis = torch.arange(side, dtype=torch.float64)
        cloud = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij")).reshape(3, -1)
    elif kind == "flat":  # one axis of no extent, like a table top
        cloud = torch.rand(3, count, generator=g, dtype=torch.float64) * 2 - 1
        cloud[2] = 0.25
    elif kind == "one_place":  # every center at one place: all distances equal, no grid to build
        cloud = (torch.rand(3, 1, generator=g, dtype=torch.float64) * 2 - 1).expand(3, count).clone()
    elif kind == "two_clusters":  # empty space between: points there must widen their search
        cloud = 0.02 * torch.randn(3, count, generator=g, dtype=torch.float64)
        cloud[0, count // 2:] += 1.5
    else:  # uniform
        cloud = torch.rand(3, count, generator=g, dtype=torch.float64) * 2 - 1
    return cloud[:, torch.randperm(cloud.shape[1], generator=g)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["uniform", "lattice", "flat", "one_place", "two_clusters"])
@pytest.mark.parametrize("centers", [1, 2, 3, 5, 64, 1000])
def test_three_nn_through_cells_matches_reference(compiled, device, dtype, kind, centers):
    """The CPU finds the three nearest through a grid of cells around each point
    (kernels/csrc/nearest_cells.h): ties at equal distances (lattice points, midpoints between
    them), centers of no extent along an axis, all at one place (the plain loop's fallback),
    empty space between clusters, points on centers
    and far outside them, fewer than three centers. Indices must equal the reference's."""
    g = torch.Generator().manual_seed(centers)
    cloud = _cloud(kind, centers, g)
    scale = cloud.abs().max().clamp(min=1.0)
    inside = cloud[:, torch.randint(0, cloud.shape[1], (64,), generator=g)]
    queries = torch.cat([
        inside,  # on centers: distance 0
        inside + 0.5,  # lattice midpoints: equal distances to several centers
        cloud.mean(dim=1, keepdim=True) + scale * (torch.rand(3, 64, generator=g, dtype=torch.float64) * 3 - 1.5),
        cloud.mean(dim=1, keepdim=True) + scale * 20 * torch.randn(3, 8, generator=g, dtype=torch.float64),
    ], dim=1)
    queries, sources = queries[None].to(device, dtype), cloud[None].to(device, dtype)
    nearest, weight = compiled.three_nn(queries.contiguous(), sources.contiguous())
    expected_nearest, expected_weight = reference.three_nn(queries, sources)
    assert torch.equal(nearest.long(), expected_nearest)
    torch.testing.assert_close(weight, expected_weight, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_three_nn_with_non_finite_coordinates_skips_them_and_stays_in_bounds(compiled, device, dtype):
    """A NaN or infinite point has no nearest center (index 0 at the largest distance, equal
    weights); a NaN center is never a neighbour. The rest of the batch is unaffected."""
    g = torch.Generator().manual_seed(5)
    queries = torch.rand(2, 3, 40, generator=g, dtype=torch.float64) * 2 - 1
    sources = torch.rand(2, 3, 30, generator=g, dtype=torch.float64) * 2 - 1
    queries[0, 1, 3], queries[0, 0, 7], queries[1, 2, 9] = float("nan"), float("inf"), float("-inf")
    sources[1, 0, 4] = float("nan")
    nearest, weight = compiled.three_nn(queries.to(device, dtype).contiguous(), sources.to(device, dtype).contiguous())
    nearest, weight = nearest.long().cpu(), weight.cpu().double()
    finite_sources = sources.clone()
    finite_sources[1, :, 4] = 1e6  # never among the three nearest
    expected, _ = reference.three_nn(queries.nan_to_num(0.0, 0.0, 0.0), finite_sources)
    bad = [(0, 3), (0, 7), (1, 9)]
    for b, n in bad:
        assert nearest[b, :, n].tolist() == [0, 0, 0]
        torch.testing.assert_close(weight[b, :, n], torch.full((3,), 1 / 3, dtype=torch.float64))
    keep = torch.ones(2, 40, dtype=torch.bool)
    for b, n in bad:
        keep[b, n] = False
    assert torch.equal(nearest.permute(0, 2, 1)[keep], expected.permute(0, 2, 1)[keep])
    assert (nearest[1] != 4).all()