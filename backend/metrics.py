"""Generation metrics of PointFlow, PVD and LION: MMD, COV and 1-NNA under Chamfer and EMD.

Definitions (matching those papers' evaluation code):
- Chamfer distance (CD) between clouds X, Y: mean over x of min_y |x - y|^2 plus mean over y
  of min_x |x - y|^2: squared distances, no square root.
- Earth mover's distance (EMD) between clouds of equal size N: the mean Euclidean distance
  |x - y| over the best one-to-one matching. "exact" solves the assignment problem (scipy's
  linear_sum_assignment); "sinkhorn" approximates it with entropy-regularized optimal
  transport, batched on the GPU, typically within a few percent of the exact value.
- MMD: for each reference shape, the distance to its closest generated shape; averaged.
- COV: the fraction of reference shapes that are the closest reference of some generated shape.
- 1-NNA: accuracy of the 1-nearest-neighbour classifier telling generated from reference
  shapes in the pooled set (leave-one-out). 0.5 is ideal; 1.0 means fully separable; below
  0.5 means generated shapes copy reference shapes.
All results are fractions in [0, 1] (papers print COV and 1-NNA as percentages).
"""
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Optional, Tuple

import torch

EMD_METHODS = ("auto", "exact", "sinkhorn", "none")
# On a GPU, "auto" still solves assignments exactly while the work, pairs x N^2, stays below
# this budget (about 5000 pairs of 2048-point clouds: minutes on a few CPU cores); on a CPU
# it always does, since Sinkhorn there is slower than the exact solver.
EXACT_EMD_BUDGET = 2e10
SINKHORN_DESCRIPTION = "approximate: entropy-regularized optimal transport (log-domain Sinkhorn, epsilon scaling)"
EXACT_DESCRIPTION = "exact: optimal one-to-one assignment (scipy linear_sum_assignment)"
# Below this cloud size an assignment takes less time than handing it to a thread.
_PARALLEL_ASSIGNMENT_POINTS = 256
# Pairs per batch are chosen so one batch's distance matrices hold about this many entries.
_BATCH_ENTRIES = {"cpu": 2**24, "cuda": 2**27}


def _check_clouds(name, clouds):
    if not isinstance(clouds, torch.Tensor) or clouds.ndim != 3 or clouds.shape[-1] != 3:
        raise ValueError(f"{name} must be a tensor [S, N, 3], got {getattr(clouds, 'shape', type(clouds))}")
    if clouds.shape[0] == 0 or clouds.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one cloud of at least one point, got {tuple(clouds.shape)}")
    if not torch.isfinite(clouds).all():
        raise ValueError(f"{name} holds NaN or infinite coordinates")


def _squared_distances(x, y):
    """[B, N, M] squared distances; both clouds are shifted by x's centroid first so the
    matrix-product form keeps its precision in float32."""
    shift = x.mean(dim=1, keepdim=True)
    x, y = x - shift, y - shift
    cross = torch.baddbmm((y * y).sum(-1).unsqueeze(1), x, y.transpose(1, 2), alpha=-2.0)
    return (cross + (x * x).sum(-1).unsqueeze(2)).clamp_(min=0.0)


def chamfer_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Chamfer distance with squared distances, per pair of clouds.

    Args:
        x: float [B, N, 3]; y: float [B, M, 3] (N and M may differ).

    Returns:
        float [B]: mean_i min_j |x_i - y_j|^2 + mean_j min_i |x_i - y_j|^2.
    """
    _check_clouds("x", x)
    _check_clouds("y", y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same number of clouds, got {x.shape[0]} and {y.shape[0]}")
    squared = _squared_distances(x, y)
    return squared.min(dim=2).values.mean(dim=1) + squared.min(dim=1).values.mean(dim=1)


def earth_movers_distance(x: torch.Tensor, y: torch.Tensor, method: str = "exact") -> torch.Tensor:
    """Mean Euclidean distance under the best one-to-one matching, per pair of clouds.

    Args:
        x, y: float [B, N, 3], the same N.
        method: "exact" (assignment problem, solved on the CPU) or "sinkhorn" (approximation,
            batched on x's device).

    Returns:
        float [B] on x's device.
    """
    _check_clouds("x", x)
    _check_clouds("y", y)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape [B, N, 3], got {tuple(x.shape)} and {tuple(y.shape)}")
    if method == "exact":
        return _exact_emd(x, y)
    if method == "sinkhorn":
        return _sinkhorn_emd(x, y)
    raise ValueError(f"method must be 'exact' or 'sinkhorn', got {method!r}")


def _exact_emd(x, y):
    from scipy.optimize import linear_sum_assignment

    costs = torch.cdist(x.double(), y.double()).cpu().numpy()

    def solve(cost):
        rows, cols = linear_sum_assignment(cost)
        return cost[rows, cols].mean()

    workers = min(len(costs), os.cpu_count() or 1)
    if workers == 1 or costs.shape[1] < _PARALLEL_ASSIGNMENT_POINTS:
        values = [solve(cost) for cost in costs]
    else:
        # scipy releases the GIL inside the solver, so threads run assignments in parallel.
        with ThreadPoolExecutor(max_workers=workers) as pool:
            values = list(pool.map(solve, costs))
    return torch.tensor(values, dtype=x.dtype, device=x.device)


def _sinkhorn_emd(x, y, final_epsilon_fraction=1e-3, scaling=0.6, iterations_per_epsilon=15, final_iterations=60):
    """Uniform-weight entropic transport with epsilon annealed from the cloud diameter down to
    final_epsilon_fraction of it; returns the transport cost of the final plan."""
    cost = torch.cdist(x.float(), y.float())  # [B, N, N]
    count = cost.shape[1]
    log_weight = -math.log(count)
    diameter = cost.amax(dim=(1, 2), keepdim=True).clamp(min=1e-12)  # [B, 1, 1]
    f = torch.zeros(cost.shape[:2], device=cost.device)
    g = torch.zeros(cost.shape[:2], device=cost.device)
    stages = max(1, math.ceil(math.log(final_epsilon_fraction) / math.log(scaling)))
    for stage in range(stages + 1):
        epsilon = diameter * max(scaling**stage, final_epsilon_fraction)
        for _ in range(final_iterations if stage == stages else iterations_per_epsilon):
            f = -epsilon[..., 0] * torch.logsumexp((g.unsqueeze(1) - cost) / epsilon + log_weight, dim=2)
            g = -epsilon[..., 0] * torch.logsumexp((f.unsqueeze(2) - cost) / epsilon + log_weight, dim=1)
    plan = torch.exp((f.unsqueeze(2) + g.unsqueeze(1) - cost) / epsilon + 2 * log_weight)
    return (plan * cost).sum(dim=(1, 2)).to(x.dtype)


def pairwise_distances(x: torch.Tensor, y: Optional[torch.Tensor], distance: Callable,
                       pairs_per_batch: Optional[int] = None,
                       progress: Optional[Callable[[int, int], None]] = None) -> torch.Tensor:
    """distance(x[i], y[j]) for every pair, computed `pairs_per_batch` pairs at a time
    (default: as many as keep one batch's N x M distance matrices to a few hundred MB).

    Args:
        x: float [S, N, 3]; y: float [R, M, 3], or None for x against itself (a symmetric
            matrix: only i < j is computed, the diagonal is 0).
        distance: a batched distance such as chamfer_distance, taking [B, N, 3], [B, M, 3]
            and returning [B].
        progress: called with (pairs done, pairs total) after every batch.

    Returns:
        float [S, R] (or [S, S]) on the CPU.
    """
    symmetric = y is None
    y = x if symmetric else y
    if distance is chamfer_distance and x.device.type == "cpu" and y.device.type == "cpu" and pairs_per_batch is None:
        return _pairwise_chamfer_kdtree(x, None if symmetric else y, progress)
    if pairs_per_batch is None:
        entries = _BATCH_ENTRIES.get(x.device.type, _BATCH_ENTRIES["cpu"])
        pairs_per_batch = max(1, entries // (x.shape[1] * y.shape[1]))
    if symmetric:
        rows, cols = torch.triu_indices(len(x), len(x), offset=1)
    else:
        grid = torch.cartesian_prod(torch.arange(len(x)), torch.arange(len(y)))
        rows, cols = grid[:, 0], grid[:, 1]
    result = torch.zeros(len(x), len(y), dtype=torch.float64)
    for start in range(0, len(rows), pairs_per_batch):
        r, c = rows[start:start + pairs_per_batch], cols[start:start + pairs_per_batch]
        values = distance(x[r.to(x.device)], y[c.to(y.device)]).double().cpu()
        result[r, c] = values
        if symmetric:
            result[c, r] = values
        if progress:
            progress(min(start + pairs_per_batch, len(rows)), len(rows))
    return result


def _pairwise_chamfer_kdtree(x: torch.Tensor, y: Optional[torch.Tensor], progress=None) -> torch.Tensor:
    """pairwise_distances(x, y, chamfer_distance) on the CPU through one k-d tree per cloud:
    each pair costs two nearest-neighbour queries, O(N log M), where the matrix form writes all
    N x M distances (about 12 times slower at 2048 points). Same values, computed in float64."""
    from scipy.spatial import cKDTree

    symmetric = y is None
    y = x if symmetric else y
    _check_clouds("x", x)
    _check_clouds("y", y)
    xs = [cloud.detach().double().numpy() for cloud in x]
    ys = xs if symmetric else [cloud.detach().double().numpy() for cloud in y]
    x_trees = [cKDTree(cloud) for cloud in xs]
    y_trees = x_trees if symmetric else [cKDTree(cloud) for cloud in ys]
    result = torch.zeros(len(xs), len(ys), dtype=torch.float64)
    total = len(xs) * (len(xs) - 1) // 2 if symmetric else len(xs) * len(ys)
    done = 0
    for i in range(len(xs)):
        for j in range(i + 1 if symmetric else 0, len(ys)):
            x_to_y = y_trees[j].query(xs[i])[0]
            y_to_x = x_trees[i].query(ys[j])[0]
            result[i, j] = float((x_to_y ** 2).mean() + (y_to_x ** 2).mean())
            if symmetric:
                result[j, i] = result[i, j]
        done += len(ys) - (i + 1 if symmetric else 0)
        if progress:
            progress(done, total)
    return result


def mmd_and_coverage(generated_to_reference: torch.Tensor) -> Tuple[float, float]:
    """(MMD, COV) from distances [G, R] between G generated and R reference shapes."""
    if generated_to_reference.ndim != 2 or 0 in generated_to_reference.shape:
        raise ValueError(f"generated_to_reference must be a non-empty [G, R] matrix, got {tuple(generated_to_reference.shape)}")
    mmd = generated_to_reference.min(dim=0).values.mean().item()
    covered = generated_to_reference.argmin(dim=1).unique().numel()
    return mmd, covered / generated_to_reference.shape[1]


def one_nearest_neighbour_accuracy(reference_to_reference: torch.Tensor, reference_to_generated: torch.Tensor,
                                   generated_to_generated: torch.Tensor) -> float:
    """Leave-one-out 1-NN accuracy of telling reference [R] from generated [G] shapes.

    Args:
        reference_to_reference: [R, R]; reference_to_generated: [R, G]; generated_to_generated: [G, G].
    """
    r, g = reference_to_reference.shape[0], generated_to_generated.shape[0]
    if reference_to_reference.shape != (r, r) or generated_to_generated.shape != (g, g) or reference_to_generated.shape != (r, g):
        raise ValueError(
            "distance matrices must be [R, R], [R, G], [G, G], got "
            f"{tuple(reference_to_reference.shape)}, {tuple(reference_to_generated.shape)}, {tuple(generated_to_generated.shape)}"
        )
    pooled = torch.cat([torch.cat([reference_to_reference, reference_to_generated], dim=1),
                        torch.cat([reference_to_generated.t(), generated_to_generated], dim=1)], dim=0).clone()
    pooled.fill_diagonal_(float("inf"))
    is_reference = torch.cat([torch.ones(r, dtype=torch.bool), torch.zeros(g, dtype=torch.bool)])
    predicted = is_reference[pooled.argmin(dim=1)]
    return (predicted == is_reference).double().mean().item()


def resolve_emd_method(method: str, shapes: int, points: int, device: torch.device) -> str:
    """"exact", "sinkhorn" or "none" for `method`; "auto" is exact on a CPU, and on a GPU
    while pairs x points^2 stays within EXACT_EMD_BUDGET."""
    if method not in EMD_METHODS:
        raise ValueError(f"emd must be one of {', '.join(EMD_METHODS)}, got {method!r}")
    if method != "auto":
        return method
    pairs = shapes * shapes * 2  # the three matrices together hold about (G + R)^2 / 2 pairs
    affordable = pairs * points**2 <= EXACT_EMD_BUDGET
    return "exact" if torch.device(device).type == "cpu" or affordable else "sinkhorn"


def generation_metrics(generated: torch.Tensor, reference: torch.Tensor, emd: str = "auto",
                       pairs_per_batch: Optional[int] = None, progress: Optional[Callable[[str, int, int], None]] = None) -> Dict[str, object]:
    """MMD, COV and 1-NNA under CD and EMD for a generated set against a reference set.

    Both sets must already be in the evaluation frame (see backend.evaluate for the papers'
    normalization protocol). Computation runs on generated's device.

    Args:
        generated: float [G, N, 3]; reference: float [R, N, 3] (same N when EMD is computed).
        emd: "auto", "exact", "sinkhorn" or "none".
        progress: called with (matrix name, pairs done, pairs total).

    Returns:
        {"MMD-CD", "COV-CD", "1-NNA-CD", and the same for EMD unless skipped: floats;
         "emd_method": a sentence saying how EMD was computed}.
    """
    _check_clouds("generated", generated)
    _check_clouds("reference", reference)
    reference = reference.to(generated.device)
    method = resolve_emd_method(emd, max(len(generated), len(reference)), generated.shape[1], generated.device)
    if method != "none" and generated.shape[1] != reference.shape[1]:
        raise ValueError(f"EMD needs clouds of equal size: generated has {generated.shape[1]} points, reference {reference.shape[1]}")
    distances = {"CD": chamfer_distance}
    if method != "none":
        distances["EMD"] = lambda a, b: earth_movers_distance(a, b, method)
    results: Dict[str, object] = {}
    for name, distance in distances.items():
        def report(label):
            return (lambda done, total: progress(f"{name} {label}", done, total)) if progress else None

        reference_to_generated = pairwise_distances(reference, generated, distance, pairs_per_batch, report("reference x generated"))
        reference_to_reference = pairwise_distances(reference, None, distance, pairs_per_batch, report("reference x reference"))
        generated_to_generated = pairwise_distances(generated, None, distance, pairs_per_batch, report("generated x generated"))
        mmd, coverage = mmd_and_coverage(reference_to_generated.t())
        results[f"MMD-{name}"] = mmd
        results[f"COV-{name}"] = coverage
        results[f"1-NNA-{name}"] = one_nearest_neighbour_accuracy(reference_to_reference, reference_to_generated, generated_to_generated)
    results["emd_method"] = {"exact": EXACT_DESCRIPTION, "sinkhorn": SINKHORN_DESCRIPTION, "none": "skipped"}[method]
    return results
