"""Metrics against brute-force definitions on tiny inputs, and their behaviour on known sets."""
import itertools

import numpy as np
import pytest
import torch

from backend.metrics import (
    EXACT_DESCRIPTION,
    chamfer_distance,
    earth_movers_distance,
    generation_metrics,
    mmd_and_coverage,
    one_nearest_neighbour_accuracy,
    pairwise_distances,
    resolve_emd_method,
)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """On a shared 2-core machine torch's worker threads spin against other processes and
    slow these tiny problems down by 20x; one thread keeps the file fast and changes no result."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _chamfer_by_loops(x, y):
    forward = np.mean([min(np.sum((p - q) ** 2) for q in y) for p in x])
    backward = np.mean([min(np.sum((p - q) ** 2) for p in x) for q in y])
    return forward + backward


def _emd_by_permutations(x, y):
    return min(np.mean([np.linalg.norm(x[i] - y[j]) for i, j in enumerate(order)]) for order in itertools.permutations(range(len(y))))


def test_chamfer_matches_double_loop_with_squared_distances():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(3, 7, 3)), rng.normal(size=(3, 5, 3)) + 10.0
    got = chamfer_distance(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32))
    expected = [_chamfer_by_loops(a, b) for a, b in zip(x, y)]
    assert np.allclose(got.numpy(), expected, rtol=1e-4)
    assert chamfer_distance(torch.tensor(x[:1]), torch.tensor(x[:1])).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("points", [1, 4, 6])
def test_exact_emd_matches_permutation_search(points):
    rng = np.random.default_rng(points)
    x, y = rng.normal(size=(4, points, 3)), rng.normal(size=(4, points, 3))
    got = earth_movers_distance(torch.tensor(x), torch.tensor(y), "exact")
    assert np.allclose(got.numpy(), [_emd_by_permutations(a, b) for a, b in zip(x, y)])


def test_sinkhorn_emd_approximates_exact_emd():
    torch.manual_seed(0)
    x, y = torch.rand(3, 128, 3), torch.rand(3, 128, 3) * 0.7 + 0.2
    exact = earth_movers_distance(x, y, "exact")
    approximate = earth_movers_distance(x, y, "sinkhorn")
    assert torch.allclose(approximate, exact, rtol=0.03)


def test_emd_of_a_shifted_cloud_is_the_shift():
    torch.manual_seed(1)
    x = torch.rand(2, 50, 3)
    shift = torch.tensor([0.0, 0.0, 5.0])
    assert torch.allclose(earth_movers_distance(x, x + shift), torch.full((2,), 5.0), atol=1e-5)


def test_pairwise_matrices_match_single_pairs():
    torch.manual_seed(2)
    a, b = torch.rand(3, 20, 3), torch.rand(4, 20, 3)
    matrix = pairwise_distances(a, b, chamfer_distance, pairs_per_batch=5)
    assert matrix.shape == (3, 4)
    assert torch.allclose(matrix[2, 1].float(), chamfer_distance(a[2:3], b[1:2])[0])
    symmetric = pairwise_distances(a, None, chamfer_distance, pairs_per_batch=2)
    assert torch.equal(symmetric, symmetric.t()) and torch.all(symmetric.diagonal() == 0)
    assert torch.allclose(symmetric[0, 2].float(), chamfer_distance(a[0:1], a[2:3])[0])


@pytest.mark.parametrize("sizes", [(5, 1, 1), (4, 37, 200), (3, 128, 16)])
def test_pairwise_chamfer_on_the_cpu_matches_the_matrix_form(sizes):
    """The k-d tree path pairwise_distances takes for chamfer_distance on the CPU against its
    matrix twin (forced by pairs_per_batch), on awkward random inputs: a single point, uneven
    sizes, coincident points."""
    count, n, m = sizes
    generator = torch.Generator().manual_seed(n + m)
    a = torch.randn(count, n, 3, generator=generator) * 2 + 1
    b = torch.rand(count + 1, m, 3, generator=generator)
    b[0, : min(n, m)] = a[0, : min(n, m)]  # shared points: zero distances
    for y in (b, None):
        fast = pairwise_distances(a, y, chamfer_distance)
        twin = pairwise_distances(a, y, chamfer_distance, pairs_per_batch=3)
        assert fast.dtype == twin.dtype == torch.float64 and fast.shape == twin.shape
        assert torch.allclose(fast, twin, rtol=1e-4, atol=1e-6)
    seen = []
    pairwise_distances(a, b, chamfer_distance, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (count * (count + 1), count * (count + 1))


def test_mmd_and_coverage_by_hand():
    # generated rows, reference columns
    distances = torch.tensor([[1.0, 5.0, 9.0], [2.0, 4.0, 8.0]])
    mmd, coverage = mmd_and_coverage(distances)
    assert mmd == pytest.approx((1.0 + 4.0 + 8.0) / 3)
    assert coverage == pytest.approx(1 / 3)  # both generated shapes are closest to reference 0


def test_one_nearest_neighbour_accuracy_by_hand():
    # references 0, 1 and generated 0, 1: each reference is nearest to the other reference,
    # generated 0 is nearest to reference 0 (misclassified), generated 1 to generated 0.
    rr = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    rg = torch.tensor([[1.5, 9.0], [9.0, 9.0]])
    gg = torch.tensor([[0.0, 2.0], [2.0, 0.0]])
    assert one_nearest_neighbour_accuracy(rr, rg, gg) == pytest.approx(3 / 4)


def _clouds(generator, count, centers, points=64):
    return torch.stack([torch.randn(points, 3, generator=generator) * 0.2 + centers[i % len(centers)] for i in range(count)])


def _random_boxes(generator, count, points=64):
    """Clouds on random axis-aligned ellipsoids: a continuous family of shapes."""
    directions = torch.nn.functional.normalize(torch.randn(count, points, 3, generator=generator), dim=-1)
    return directions * (0.5 + torch.rand(count, 1, 3, generator=generator))


def test_same_distribution_gives_about_half_and_disjoint_gives_all():
    generator = torch.Generator().manual_seed(0)
    reference, sibling = _random_boxes(generator, 60), _random_boxes(generator, 60)
    same = generation_metrics(sibling, reference, emd="none")
    assert 0.35 <= same["1-NNA-CD"] <= 0.65
    assert same["COV-CD"] > 0.4

    far_away = reference[:12] + torch.tensor([100.0, 0.0, 0.0])
    disjoint = generation_metrics(far_away, reference[:12], emd="exact")
    assert disjoint["1-NNA-CD"] == 1.0 and disjoint["1-NNA-EMD"] == 1.0
    assert disjoint["MMD-EMD"] == pytest.approx(100.0, rel=0.01)
    assert disjoint["emd_method"] == EXACT_DESCRIPTION


def test_copying_the_reference_is_caught():
    generator = torch.Generator().manual_seed(3)
    reference = _clouds(generator, 10, torch.randn(10, 3, generator=generator) * 3, points=16)
    copied = generation_metrics(reference.clone(), reference, emd="exact")
    assert copied["1-NNA-CD"] == 0.0 and copied["1-NNA-EMD"] == 0.0
    assert copied["COV-CD"] == 1.0 and copied["MMD-CD"] == pytest.approx(0.0, abs=1e-6)


def test_coverage_stays_within_its_bounds():
    generator = torch.Generator().manual_seed(4)
    reference = _clouds(generator, 12, torch.randn(12, 3, generator=generator) * 3, points=16)
    collapsed = reference[:1].repeat(5, 1, 1)  # mode collapse: one shape, five times
    result = generation_metrics(collapsed, reference, emd="none")
    assert result["COV-CD"] == pytest.approx(1 / 12)
    assert result["emd_method"] == "skipped" and "MMD-EMD" not in result


def test_automatic_emd_choice_and_validation():
    assert resolve_emd_method("auto", 1000, 2048, torch.device("cpu")) == "exact"
    assert resolve_emd_method("auto", 1000, 2048, torch.device("cuda")) == "sinkhorn"
    assert resolve_emd_method("auto", 20, 2048, torch.device("cuda")) == "exact"
    with pytest.raises(ValueError, match="emd must be one of"):
        resolve_emd_method("fast", 1, 1, torch.device("cpu"))
    with pytest.raises(ValueError, match="EMD needs clouds of equal size"):
        generation_metrics(torch.rand(2, 8, 3), torch.rand(2, 9, 3), emd="exact")
    with pytest.raises(ValueError, match="reference holds NaN"):
        generation_metrics(torch.rand(2, 8, 3), torch.full((2, 8, 3), float("nan")))
    with pytest.raises(ValueError, match=r"generated must be a tensor \[S, N, 3\]"):
        generation_metrics(torch.rand(8, 3), torch.rand(2, 8, 3))
