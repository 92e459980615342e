"""Closed-form checks of backend.diffusion: schedule, forward process, posterior, loss, samplers.

Reference values are computed here independently (numpy, float64) from the DDPM/DDIM formulas,
not by calling the module under test.
"""
import math

import numpy as np
import pytest
import torch

from backend import diffusion

T = 1000
SCHEDULE = diffusion.DiffusionSchedule()
ALPHA_BAR = np.concatenate([[1.0], np.cumprod(1.0 - np.linspace(1e-4, 0.02, T))])


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """These tensors are small; on a busy shared CPU, intra-op threads only add contention
    (a 1000-step chain measured 0.3 s on one thread and 6 s on two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def per_sample(values, like):
    return values.reshape((like.shape[0],) + (1,) * (like.dim() - 1))


def smooth_toy_eps(x, index):
    """A smooth, bounded ε model: nonlinear in x, varying with the step."""
    time = per_sample(index.to(x.dtype) / T, x)
    return 0.3 * torch.tanh(x) + 0.1 * torch.sin(3.0 * time)


def gaussian_eps(mean, std):
    """The exact ε prediction E[ε | x_t] for data drawn from N(mean, std²) in every entry."""

    def eps_model(x, index):
        a = per_sample(torch.as_tensor(ALPHA_BAR, dtype=x.dtype)[index.cpu() + 1].to(x.device), x)
        return (1.0 - a).sqrt() * (x - a.sqrt() * mean) / (a * std**2 + 1.0 - a)

    return eps_model


def linear_gaussian_chain(mean, std, transitions):
    """Exact mean and variance after running a sampler whose steps are affine in x.

    For Gaussian data the exact ε is affine in x_t, so every DDPM/DDIM step is
    x' = A·x + c + σ·z. transitions: (t, t_next, kind, eta) with kind "ddpm" or "ddim".
    Starts from N(0, 1) at the first t.
    """
    m, v = 0.0, 1.0
    for t, t_next, kind, eta in transitions:
        a, a_next = ALPHA_BAR[t], ALPHA_BAR[t_next]
        k = math.sqrt(1 - a) / (a * std**2 + 1 - a)  # eps = k·(x - sqrt(a)·mean)

        def step(x):
            eps = k * (x - math.sqrt(a) * mean)
            if kind == "ddpm":
                beta = 1 - a / a_next
                return (x - beta / math.sqrt(1 - a) * eps) / math.sqrt(1 - beta)
            sigma2 = eta**2 * (1 - a_next) / (1 - a) * (1 - a / a_next)
            x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
            return math.sqrt(a_next) * x0 + math.sqrt(1 - a_next - sigma2) * eps

        if kind == "ddpm":
            noise_var = (1 - a / a_next) if t_next > 0 else 0.0
        else:
            noise_var = eta**2 * (1 - a_next) / (1 - a) * (1 - a / a_next)
        slope = step(1.0) - step(0.0)
        m, v = step(m), slope**2 * v + noise_var
    return m, v


# ----------------------------------------------------------------------------- schedule


def test_schedule_tables_follow_the_linear_beta_schedule():
    assert SCHEDULE.betas.dtype == torch.float64
    assert SCHEDULE.betas.shape == (T + 1,)
    assert SCHEDULE.betas[0] == 0 and SCHEDULE.alphas_cumprod[0] == 1
    assert math.isclose(float(SCHEDULE.betas[1]), 1e-4) and math.isclose(float(SCHEDULE.betas[T]), 0.02)
    np.testing.assert_allclose(SCHEDULE.alphas_cumprod.numpy(), ALPHA_BAR, rtol=1e-12)
    assert SCHEDULE.alpha_bar(T) == pytest.approx(ALPHA_BAR[T], rel=1e-12)
    custom = diffusion.DiffusionSchedule(num_steps=10, beta_start=1e-3, beta_end=0.2)
    np.testing.assert_allclose(custom.betas[1:].numpy(), np.linspace(1e-3, 0.2, 10))


@pytest.mark.parametrize(
    "kwargs, name",
    [({"num_steps": 0}, "num_steps"), ({"beta_start": 0.1, "beta_end": 0.01}, "beta_start"),
     ({"beta_end": 1.5}, "beta_end")],
)
def test_schedule_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        diffusion.DiffusionSchedule(**kwargs)


# ----------------------------------------------------------------------------- forward process


@pytest.mark.parametrize("t", [1, 10, 250, 1000])
def test_q_sample_moments_match_closed_form(t):
    samples = 20000
    x0 = torch.linspace(-1.5, 2.0, 6, dtype=torch.float64).expand(samples, 6)
    x_t = diffusion.q_sample(SCHEDULE, x0, t, generator=seeded(t))
    expected_mean = math.sqrt(ALPHA_BAR[t]) * x0[0]
    expected_var = 1.0 - ALPHA_BAR[t]
    mean_tolerance = 5 * math.sqrt(expected_var / samples)
    assert torch.all((x_t.mean(0) - expected_mean).abs() < mean_tolerance)
    assert torch.all((x_t.var(0) / expected_var - 1).abs() < 5 * math.sqrt(2 / samples))


def test_q_sample_per_sample_steps_match_shared_steps():
    x0 = torch.randn(3, 5, 4, generator=seeded(1), dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=seeded(2), dtype=torch.float64)
    steps = torch.tensor([0, 7, 1000])
    together = diffusion.q_sample(SCHEDULE, x0, steps, noise)
    for i, t in enumerate(steps.tolist()):
        alone = diffusion.q_sample(SCHEDULE, x0[i:i + 1], t, noise[i:i + 1])
        torch.testing.assert_close(together[i:i + 1], alone, rtol=1e-12, atol=1e-12)
    assert torch.equal(together[0], x0[0])


def test_predict_x0_inverts_q_sample():
    x0 = torch.randn(4, 128, generator=seeded(3), dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=seeded(4), dtype=torch.float64)
    steps = torch.tensor([1, 40, 600, 1000])
    x_t = diffusion.q_sample(SCHEDULE, x0, steps, noise)
    torch.testing.assert_close(diffusion.predict_x0(SCHEDULE, x_t, steps, noise), x0, rtol=1e-9, atol=1e-9)


def test_posterior_mean_variance_matches_bayes_rule():
    # q(x_{t-1} | x_t, x0) ∝ N(x_t; sqrt(α_t)·x_{t-1}, β_t) · N(x_{t-1}; sqrt(a_{t-1})·x0, 1 - a_{t-1})
    steps = [2, 3, 50, 999, 1000]
    x0 = torch.randn(len(steps), 7, 4, generator=seeded(5), dtype=torch.float64)
    x_t = torch.randn(x0.shape, generator=seeded(6), dtype=torch.float64)
    mean, variance = diffusion.posterior_mean_variance(SCHEDULE, x0, x_t, torch.tensor(steps))
    assert variance.shape == (len(steps), 1, 1)
    for i, t in enumerate(steps):
        a_prev = ALPHA_BAR[t - 1]
        alpha = ALPHA_BAR[t] / a_prev
        beta = 1 - alpha
        precision = alpha / beta + 1 / (1 - a_prev)
        expected_mean = (math.sqrt(alpha) / beta * x_t[i] + math.sqrt(a_prev) / (1 - a_prev) * x0[i]) / precision
        torch.testing.assert_close(mean[i], expected_mean, rtol=1e-9, atol=1e-9)
        assert float(variance[i]) == pytest.approx(1 / precision, rel=1e-9)


def test_posterior_at_step_one_is_the_data():
    x0 = torch.randn(2, 9, generator=seeded(7), dtype=torch.float64)
    x_1 = torch.randn(x0.shape, generator=seeded(8), dtype=torch.float64)
    mean, variance = diffusion.posterior_mean_variance(SCHEDULE, x0, x_1, 1)
    torch.testing.assert_close(mean, x0, rtol=1e-12, atol=1e-12)
    assert float(variance) == 0.0


# ----------------------------------------------------------------------------- one step


@pytest.mark.parametrize("t", [2, 100, 1000])
def test_ddpm_step_mean_is_the_posterior_mean_of_the_predicted_data(t):
    x_t = torch.randn(5, 16, generator=seeded(9), dtype=torch.float64)
    eps = torch.randn(x_t.shape, generator=seeded(10), dtype=torch.float64)
    noise = torch.randn(x_t.shape, generator=seeded(11), dtype=torch.float64)
    mean, _ = diffusion.posterior_mean_variance(SCHEDULE, diffusion.predict_x0(SCHEDULE, x_t, t, eps), x_t, t)
    stepped = diffusion.ddpm_step(SCHEDULE, x_t, eps, t, noise)
    beta = 1 - ALPHA_BAR[t] / ALPHA_BAR[t - 1]
    torch.testing.assert_close(stepped, mean + math.sqrt(beta) * noise, rtol=1e-9, atol=1e-9)


def test_ddim_step_up_then_down_with_the_same_eps_is_exact():
    x = torch.randn(3, 11, generator=seeded(12), dtype=torch.float64)
    eps = torch.randn(x.shape, generator=seeded(13), dtype=torch.float64)
    up = diffusion.ddim_step(SCHEDULE, x, eps, 120, 480)
    torch.testing.assert_close(diffusion.ddim_step(SCHEDULE, up, eps, 480, 120), x, rtol=1e-10, atol=1e-10)


def test_ddim_step_with_eta_one_on_adjacent_steps_has_the_posterior_variance():
    t = 300
    x = torch.randn(2, 6, generator=seeded(14), dtype=torch.float64)
    eps = torch.randn(x.shape, generator=seeded(15), dtype=torch.float64)
    noise = torch.randn(x.shape, generator=seeded(16), dtype=torch.float64)
    with_noise = diffusion.ddim_step(SCHEDULE, x, eps, t, t - 1, eta=1.0, noise=noise)
    without = diffusion.ddim_step(SCHEDULE, x, eps, t, t - 1, eta=1.0, noise=torch.zeros_like(noise))
    _, variance = diffusion.posterior_mean_variance(SCHEDULE, x, x, t)
    torch.testing.assert_close(with_noise - without, variance.sqrt() * noise, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- training loss


def test_training_loss_with_given_steps_and_noise_is_the_mse():
    x0 = torch.randn(4, 10, 4, generator=seeded(17))
    t = torch.tensor([1, 2, 500, 1000])
    noise = torch.randn(x0.shape, generator=seeded(18))
    per_sample = diffusion.training_loss(SCHEDULE, smooth_toy_eps, x0, t=t, noise=noise, reduction="none")
    x_t = torch.sqrt(torch.tensor(ALPHA_BAR[[1, 2, 500, 1000]], dtype=torch.float32)).reshape(4, 1, 1) * x0 + \
        torch.sqrt(1 - torch.tensor(ALPHA_BAR[[1, 2, 500, 1000]], dtype=torch.float32)).reshape(4, 1, 1) * noise
    expected = (smooth_toy_eps(x_t, t - 1) - noise).square().mean(dim=(1, 2))
    assert per_sample.shape == (4,)
    torch.testing.assert_close(per_sample, expected, rtol=1e-5, atol=1e-6)
    mean = diffusion.training_loss(SCHEDULE, smooth_toy_eps, x0, t=t, noise=noise)
    assert mean.shape == () and float(mean) == pytest.approx(float(expected.mean()), rel=1e-5)


def test_training_loss_draws_steps_uniformly_from_one_to_T():
    seen = []

    def recording_model(x, index):
        seen.append(index)
        return torch.zeros_like(x)

    diffusion.training_loss(SCHEDULE, recording_model, torch.zeros(20000, 2), generator=seeded(19))
    index = seen[0]
    assert index.dtype == torch.int64 and int(index.min()) == 0 and int(index.max()) == T - 1
    counts = torch.bincount(index, minlength=T).double()
    # each tenth of the range holds about a tenth of the draws
    assert torch.all((counts.reshape(10, 100).sum(1) / 2000 - 1).abs() < 0.1)


def test_training_loss_of_the_exact_model_matches_its_closed_form():
    # For N(μ, s²) data the Bayes-optimal ε has error variance a·s²/(a·s² + 1 - a) per entry.
    mean, std = 0.5, 0.3
    x0 = mean + std * torch.randn(40000, 4, generator=seeded(20), dtype=torch.float64)
    loss = diffusion.training_loss(SCHEDULE, gaussian_eps(mean, std), x0, generator=seeded(21))
    a = ALPHA_BAR[1:]
    expected = np.mean(a * std**2 / (a * std**2 + 1 - a))
    assert float(loss) == pytest.approx(expected, rel=0.05)


def test_training_loss_gradient_reaches_the_model():
    weight = torch.nn.Parameter(torch.tensor(0.5))
    loss = diffusion.training_loss(SCHEDULE, lambda x, t: weight * x, torch.randn(8, 3), generator=seeded(22))
    loss.backward()
    assert weight.grad is not None and weight.grad != 0


# ----------------------------------------------------------------------------- mixed score


def test_mixed_eps_blends_network_and_standard_normal_prediction():
    x_t = torch.randn(3, 5, 4, generator=seeded(23), dtype=torch.float64)
    network_eps = torch.randn(x_t.shape, generator=seeded(24), dtype=torch.float64)
    t = torch.tensor([1, 300, 1000])
    logit = torch.linspace(-3, 3, 20, dtype=torch.float64).reshape(5, 4)
    mixed = diffusion.mixed_eps(SCHEDULE, network_eps, x_t, t, logit)
    weight = 1 / (1 + torch.exp(-logit))
    gaussian = torch.sqrt(1 - torch.tensor(ALPHA_BAR[[1, 300, 1000]])).reshape(3, 1, 1) * x_t
    torch.testing.assert_close(mixed, (1 - weight) * gaussian + weight * network_eps)


class TimeBlindLinear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(4))

    def forward(self, x, t):
        return self.weight * x


def test_mixed_score_loss_trains_the_logits_and_the_network():
    network = TimeBlindLinear()
    logit = torch.nn.Parameter(torch.full((6, 4), -6.0))
    loss = diffusion.training_loss(SCHEDULE, network, torch.randn(5, 6, 4), prediction="mixed", mixing_logit=logit,
                                   generator=seeded(25))
    loss.backward()
    assert logit.grad is not None and torch.all(logit.grad != 0) and network.weight.grad is not None


def test_eps_from_v_output_inverts_the_v_target():
    x0 = torch.randn(3, 7, 4, generator=seeded(26), dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=seeded(27), dtype=torch.float64)
    t = torch.tensor([1, 500, 1000])
    x_t = diffusion.q_sample(SCHEDULE, x0, t, noise)
    v = diffusion.velocity(SCHEDULE, x0, t, noise)
    torch.testing.assert_close(diffusion.eps_from_output(SCHEDULE, "v", v, x_t, t), noise)
    assert diffusion.eps_from_output(SCHEDULE, "eps", noise, x_t, t) is noise


def test_v_loss_is_zero_for_the_exact_v_and_equals_the_weighted_eps_error():
    x0 = torch.randn(4, 5, generator=seeded(28), dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=seeded(29), dtype=torch.float64)
    t = torch.tensor([3, 200, 700, 1000])
    exact = lambda x_t, index: diffusion.velocity(SCHEDULE, x0, index + 1, noise)  # noqa: E731
    assert diffusion.training_loss(SCHEDULE, exact, x0, prediction="v", t=t, noise=noise).item() < 1e-20
    # A constant error c in v is an error sqrt(a_t)·c in eps.
    shifted = lambda x_t, index: exact(x_t, index) + 0.1  # noqa: E731
    v_loss = diffusion.training_loss(SCHEDULE, shifted, x0, prediction="v", t=t, noise=noise, reduction="none")
    torch.testing.assert_close(v_loss, torch.full((4,), 0.01, dtype=torch.float64))
    eps_model = diffusion.as_eps_model(SCHEDULE, shifted, "v")
    x_t = diffusion.q_sample(SCHEDULE, x0, t, noise)
    eps_error = (eps_model(x_t, t - 1) - noise).square().mean(dim=1)
    torch.testing.assert_close(eps_error, 0.01 * torch.tensor(ALPHA_BAR[[3, 200, 700, 1000]]))


def _hand_written_ddim(network, prediction, logit, x, steps):
    """DDIM with eta 0 written out from the formulas, in float64, for each parameterization."""
    alpha_bar = torch.tensor(ALPHA_BAR, dtype=torch.float64)
    for t, t_next in zip(steps, steps[1:] + [0]):
        out = network(x, torch.full((x.shape[0],), t - 1))
        a, a_next = alpha_bar[t], alpha_bar[t_next]
        if prediction == "eps":
            eps = out
        elif prediction == "v":
            eps = a.sqrt() * out + (1 - a).sqrt() * x
        else:
            m = 1 / (1 + torch.exp(-logit))
            eps = (1 - m) * (1 - a).sqrt() * x + m * out
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
    return x


@pytest.mark.parametrize("prediction", ["eps", "v", "mixed"])
def test_sampler_with_each_parameterization_matches_its_hand_written_twin(prediction):
    weights = torch.randn(4, generator=seeded(30), dtype=torch.float64)
    network = lambda x, index: torch.tanh(weights * x) + 1e-3 * index.reshape(-1, 1, 1)  # noqa: E731
    logit = torch.randn(6, 4, generator=seeded(31), dtype=torch.float64)
    x = torch.randn(3, 6, 4, generator=seeded(32), dtype=torch.float64)
    steps = diffusion.sampling_steps(SCHEDULE, 12)
    eps_model = diffusion.as_eps_model(SCHEDULE, network, prediction, logit if prediction == "mixed" else None)
    sampled = diffusion.ddim_sample(SCHEDULE, eps_model, x, steps)
    torch.testing.assert_close(sampled, _hand_written_ddim(network, prediction, logit, x, steps))


def test_mixed_score_needs_its_logits_and_unknown_predictions_are_refused():
    with pytest.raises(ValueError, match="mixing_logit"):
        diffusion.as_eps_model(SCHEDULE, TimeBlindLinear(), "mixed")
    with pytest.raises(ValueError, match="prediction must be one of"):
        diffusion.training_loss(SCHEDULE, TimeBlindLinear(), torch.randn(2, 4), prediction="x0")


# ----------------------------------------------------------------------------- step plans


def test_uniform_steps_follow_the_official_spacing():
    count = 25
    official = sorted(int(np.floor(i * (T - 1.0) / (count - 1.0))) for i in range(count))[::-1]
    assert diffusion.sampling_steps(SCHEDULE, count) == [s + 1 for s in official]


@pytest.mark.parametrize("spacing", ["uniform", "quadratic"])
@pytest.mark.parametrize("start", [1, 7, 60])
def test_sampling_steps_are_distinct_descending_and_span_the_range(spacing, start):
    for count in range(1, start + 1):
        steps = diffusion.sampling_steps(SCHEDULE, count, spacing, start=start)
        assert len(steps) == count and steps[0] == start and steps[-1] == (1 if count > 1 else start)
        assert all(a > b for a, b in zip(steps, steps[1:]))


def test_quadratic_steps_are_denser_near_the_data():
    steps = diffusion.sampling_steps(SCHEDULE, 20, "quadratic")
    assert steps[-2] - steps[-1] < steps[0] - steps[1]


@pytest.mark.parametrize("kwargs", [{"count": 0}, {"count": 1001}, {"count": 5, "spacing": "cosine"},
                                    {"count": 5, "start": 0}])
def test_sampling_steps_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        diffusion.sampling_steps(SCHEDULE, **kwargs)


def test_repaint_path_goes_down_by_one_and_jumps_up():
    path = diffusion.repaint_path(40, 10, 3)
    assert path[0] == 40 and path[-1] == 0
    moves = [b - a for a, b in zip(path, path[1:])]
    assert set(moves) == {-1, 10}
    # jump points 0, 10, 20, 30, each denoised twice more
    assert moves.count(10) == 4 * 2 and moves.count(-1) == 40 + 4 * 2 * 10
    assert diffusion.repaint_path(40, 10, 1) == list(range(40, -1, -1))


# ----------------------------------------------------------------------------- samplers


def test_network_sees_the_official_zero_based_indices():
    # Official LION calls its networks with index + 1 for index = 999..0 (DDPM) or
    # floor(i·999/24) (DDIM-25); backend.models' priors embed index + 1 the same way.
    seen = []

    def recording_model(x, index):
        seen.append(int(index[0]))
        return torch.zeros_like(x)

    diffusion.ddpm_sample(SCHEDULE, recording_model, torch.zeros(1, 2), generator=seeded(44))
    assert seen == list(range(T - 1, -1, -1))
    seen.clear()
    diffusion.ddim_sample(SCHEDULE, recording_model, torch.zeros(1, 2), diffusion.sampling_steps(SCHEDULE, 25))
    assert seen == [int(np.floor(i * (T - 1.0) / 24.0)) for i in range(24, -1, -1)]


def test_ddim_inversion_then_sampling_returns_the_start():
    x0 = 0.5 * torch.randn(16, 128, generator=seeded(26), dtype=torch.float64)
    steps = diffusion.sampling_steps(SCHEDULE, 25)
    noise = diffusion.ddim_invert(SCHEDULE, smooth_toy_eps, x0, steps, refinement_iterations=8)
    back = diffusion.ddim_sample(SCHEDULE, smooth_toy_eps, noise, steps)
    assert (back - x0).abs().max() < 1e-4
    assert (noise - x0).abs().max() > 0.5  # the round trip is not a trivial identity


def test_ddim_inversion_is_exact_without_refinement_when_eps_ignores_x():
    def time_only_eps(x, t):
        return torch.zeros_like(x) + 0.2 * torch.cos(per_sample(t.to(x.dtype), x) / 100)

    x0 = torch.randn(4, 32, 4, generator=seeded(27), dtype=torch.float64)
    steps = diffusion.sampling_steps(SCHEDULE, 10, "quadratic")
    back = diffusion.ddim_sample(SCHEDULE, time_only_eps, diffusion.ddim_invert(SCHEDULE, time_only_eps, x0, steps), steps)
    assert (back - x0).abs().max() < 1e-8


def test_refinement_makes_inversion_more_exact():
    x0 = 0.5 * torch.randn(8, 64, generator=seeded(28), dtype=torch.float64)
    steps = diffusion.sampling_steps(SCHEDULE, 25)
    errors = []
    for iterations in (0, 2, 4):
        noise = diffusion.ddim_invert(SCHEDULE, smooth_toy_eps, x0, steps, refinement_iterations=iterations)
        errors.append(float((diffusion.ddim_sample(SCHEDULE, smooth_toy_eps, noise, steps) - x0).abs().max()))
    assert errors[0] > errors[1] > errors[2]


def test_tau_zero_returns_the_input_without_calling_the_model():
    def forbidden_model(x, t):
        raise AssertionError("no network step expected at tau = 0")

    x0 = torch.randn(3, 20, 4, generator=seeded(29))
    assert torch.equal(diffusion.diffuse_denoise(SCHEDULE, forbidden_model, x0, 0, generator=seeded(30)), x0)
    assert torch.equal(diffusion.diffuse_denoise(SCHEDULE, forbidden_model, x0, 0, num_steps=5), x0)
    assert torch.equal(diffusion.ddpm_sample(SCHEDULE, forbidden_model, x0, start_step=0), x0)


@pytest.mark.parametrize("num_steps, expected", [(None, list(range(30, 0, -1))), (4, [30, 20, 10, 1]),
                                                 (100, list(range(30, 0, -1)))])
def test_diffuse_denoise_runs_the_steps_below_tau(num_steps, expected):
    seen = []

    def recording_model(x, index):
        assert index.dtype == torch.int64 and torch.all(index == index[0])
        seen.append(int(index[0]) + 1)
        return torch.zeros_like(x)

    diffusion.diffuse_denoise(SCHEDULE, recording_model, torch.zeros(2, 3), 30, num_steps=num_steps,
                              generator=seeded(31))
    assert seen == expected


def test_small_tau_stays_close_to_the_input():
    mean, std = 0.0, 1.0
    x0 = torch.randn(64, 128, generator=seeded(32))
    near = diffusion.diffuse_denoise(SCHEDULE, gaussian_eps(mean, std), x0, 5, generator=seeded(33))
    far = diffusion.diffuse_denoise(SCHEDULE, gaussian_eps(mean, std), x0, 800, num_steps=20, generator=seeded(33))
    assert (near - x0).square().mean() < 0.01 < (far - x0).square().mean()


def test_ddpm_samples_of_gaussian_data_have_the_right_moments():
    mean, std = 0.5, 0.3
    noise = torch.randn(10000, 4, generator=seeded(34))
    samples = diffusion.ddpm_sample(SCHEDULE, gaussian_eps(mean, std), noise, generator=seeded(35))
    chain_mean, chain_var = linear_gaussian_chain(mean, std, [(t, t - 1, "ddpm", 0) for t in range(T, 0, -1)])
    n = samples.numel()
    assert abs(float(samples.mean()) - chain_mean) < 5 * math.sqrt(chain_var / n)
    assert float(samples.var()) == pytest.approx(chain_var, rel=5 * math.sqrt(2 / n))
    assert chain_mean == pytest.approx(mean, abs=0.005) and chain_var == pytest.approx(std**2, rel=0.03)


@pytest.mark.parametrize("count, spacing, eta", [(25, "uniform", 0.0), (50, "quadratic", 0.0),
                                                 (40, "uniform", 1.0), (T, "uniform", 0.0)])
def test_ddim_samples_of_gaussian_data_have_the_right_moments(count, spacing, eta):
    mean, std = 0.5, 0.3
    steps = diffusion.sampling_steps(SCHEDULE, count, spacing)
    noise = torch.randn(10000, 4, generator=seeded(36))
    samples = diffusion.ddim_sample(SCHEDULE, gaussian_eps(mean, std), noise, steps, eta=eta, generator=seeded(37))
    chain_mean, chain_var = linear_gaussian_chain(
        mean, std, [(t, t_next, "ddim", eta) for t, t_next in zip(steps, steps[1:] + [0])])
    n = samples.numel()
    assert abs(float(samples.mean()) - chain_mean) < 5 * math.sqrt(chain_var / n)
    assert float(samples.var()) == pytest.approx(chain_var, rel=5 * math.sqrt(2 / n))
    # DDIM converges to the data distribution as steps are added
    assert chain_mean == pytest.approx(mean, abs=0.01)
    assert chain_var == pytest.approx(std**2, rel=0.02 if count == T else 0.35)


def test_masked_sampling_keeps_the_known_entries_exactly():
    x0 = torch.randn(3, 64, 4, generator=seeded(38))
    known = torch.rand(3, 64, 1, generator=seeded(39)) < 0.5
    totals = []
    result = diffusion.masked_sample(SCHEDULE, smooth_toy_eps, x0, known, start_step=40, jump_length=10,
                                     resamples=3, generator=seeded(40), callback=lambda i, n: totals.append(n))
    expanded = known.expand_as(x0)
    assert torch.equal(result[expanded], x0[expanded])
    assert torch.all(result[~expanded] != x0[~expanded])
    assert len(totals) == totals[0] == 40 + 4 * 2 * 10


def test_masked_sampling_fills_the_unknown_part_from_the_model():
    # Known half from one Gaussian, the model's data distribution is another; the regenerated
    # half must follow the model, not the known entries.
    mean, std = -1.0, 0.5
    x0 = torch.full((1000, 8), 3.0)
    known = torch.zeros(1, 8, dtype=torch.bool)
    known[0, :4] = True
    result = diffusion.masked_sample(SCHEDULE, gaussian_eps(mean, std), x0, known, generator=seeded(41))
    regenerated = result[:, 4:]
    assert float(regenerated.mean()) == pytest.approx(mean, abs=0.03)
    assert float(regenerated.std()) == pytest.approx(std, rel=0.05)
    assert torch.all(result[:, :4] == 3.0)


def _run_every_sampler(generator_seed, callback=None, model=smooth_toy_eps):
    x = torch.randn(2, 16, 4, generator=seeded(42))
    steps = diffusion.sampling_steps(SCHEDULE, 10)
    known = torch.arange(16).reshape(1, 16, 1) < 8
    return {
        "ddpm": diffusion.ddpm_sample(SCHEDULE, model, x, start_step=20, generator=seeded(generator_seed),
                                      callback=callback),
        "ddim": diffusion.ddim_sample(SCHEDULE, model, x, steps, eta=0.5, generator=seeded(generator_seed),
                                      callback=callback),
        "invert": diffusion.ddim_invert(SCHEDULE, model, x, steps, refinement_iterations=1, callback=callback),
        "variations": diffusion.diffuse_denoise(SCHEDULE, model, x, 15, num_steps=5,
                                                generator=seeded(generator_seed), callback=callback),
        "masked": diffusion.masked_sample(SCHEDULE, model, x, known, start_step=12, jump_length=4, resamples=2,
                                          generator=seeded(generator_seed), callback=callback),
    }


def test_same_seed_gives_identical_samples():
    first, again, other = _run_every_sampler(7), _run_every_sampler(7), _run_every_sampler(8)
    for name in first:
        assert torch.equal(first[name], again[name]), name
        if name != "invert":
            assert not torch.equal(first[name], other[name]), name


def test_callback_sees_every_step():
    calls = []
    _run_every_sampler(0, callback=lambda step, total: calls.append((step, total)))
    masked_steps = 12 + 3 * 4  # jump points 0, 4, 8, each stretch redone once
    expected = [(20, 20), (10, 10), (10, 10), (5, 5), (masked_steps, masked_steps)]
    start = 0
    for count, total in expected:
        assert calls[start:start + count] == [(i, total) for i in range(1, total + 1)]
        start += count
    assert start == len(calls)


class Cancelled(Exception):
    pass


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "invert", "variations", "masked"])
def test_callback_can_cancel_within_one_step(sampler):
    model_calls = []

    def counting_model(x, t):
        model_calls.append(int(t[0]))
        return smooth_toy_eps(x, t)

    def cancel_at_step_three(step, total):
        if step == 3:
            raise Cancelled

    x = torch.randn(2, 5, generator=seeded(43))
    steps = diffusion.sampling_steps(SCHEDULE, 10)
    run = {
        "ddpm": lambda: diffusion.ddpm_sample(SCHEDULE, counting_model, x, callback=cancel_at_step_three),
        "ddim": lambda: diffusion.ddim_sample(SCHEDULE, counting_model, x, steps, callback=cancel_at_step_three),
        "invert": lambda: diffusion.ddim_invert(SCHEDULE, counting_model, x, steps, callback=cancel_at_step_three),
        "variations": lambda: diffusion.diffuse_denoise(SCHEDULE, counting_model, x, 500,
                                                        callback=cancel_at_step_three),
        "masked": lambda: diffusion.masked_sample(SCHEDULE, counting_model, x, torch.tensor([True, False]).repeat(3)[:5],
                                                  resamples=2, callback=cancel_at_step_three),
    }[sampler]
    with pytest.raises(Cancelled):
        run()
    assert len(model_calls) == 3


def test_samplers_do_not_track_gradients():
    weight = torch.nn.Parameter(torch.tensor(0.1))
    out = diffusion.ddim_sample(SCHEDULE, lambda x, t: weight * x, torch.randn(2, 3), [100, 50, 1])
    assert not out.requires_grad


# ----------------------------------------------------------------------------- validation


def test_model_output_of_the_wrong_shape_is_reported():
    with pytest.raises(ValueError, match="eps_model"):
        diffusion.ddim_sample(SCHEDULE, lambda x, t: x[:, :2], torch.randn(2, 3), [10, 1])


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: diffusion.ddim_sample(SCHEDULE, smooth_toy_eps, torch.randn(2, 3), [1, 10]), "steps"),
        (lambda: diffusion.ddim_sample(SCHEDULE, smooth_toy_eps, torch.randn(2, 3), [10, 1], eta=2.0), "eta"),
        (lambda: diffusion.q_sample(SCHEDULE, torch.randn(2, 3), torch.tensor([1.0, 2.0])), "t"),
        (lambda: diffusion.q_sample(SCHEDULE, torch.randn(2, 3), 1001), "t"),
        (lambda: diffusion.q_sample(SCHEDULE, torch.randn(2, 3), 5, torch.randn(2, 4)), "noise"),
        (lambda: diffusion.posterior_mean_variance(SCHEDULE, torch.randn(2, 3), torch.randn(2, 3), 0), "t"),
        (lambda: diffusion.masked_sample(SCHEDULE, smooth_toy_eps, torch.randn(2, 3), torch.ones(2, 3)),
         "known_mask"),
        (lambda: diffusion.masked_sample(SCHEDULE, smooth_toy_eps, torch.randn(2, 3),
                                         torch.ones(2, 4, dtype=torch.bool)), "known_mask"),
        (lambda: diffusion.diffuse_denoise(SCHEDULE, smooth_toy_eps, torch.randn(2, 3), -1), "tau"),
        (lambda: diffusion.training_loss(SCHEDULE, smooth_toy_eps, torch.randn(2, 3), reduction="sum"),
         "reduction"),
        (lambda: diffusion.mixed_eps(SCHEDULE, torch.randn(2, 3), torch.randn(2, 3), torch.tensor([1, 2]),
                                     torch.zeros(4)), "mixing_logit"),
        (lambda: diffusion.ddim_step(SCHEDULE, torch.randn(2, 3), torch.randn(2, 3), 5, 9, eta=0.5), "eta"),
        (lambda: diffusion.ddpm_sample(SCHEDULE, smooth_toy_eps, torch.arange(3)), "x"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them(call, name):
    with pytest.raises(ValueError, match=name):
        call()


# ----------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
def test_cuda_sampling_matches_cpu_with_a_cpu_generator():
    x = torch.randn(4, 64, 4, generator=seeded(44))
    steps = diffusion.sampling_steps(SCHEDULE, 20)
    known = torch.arange(64).reshape(1, 64, 1) < 32
    for run in (
        lambda x, k: diffusion.ddim_sample(SCHEDULE, smooth_toy_eps, x, steps, eta=0.5, generator=seeded(45)),
        lambda x, k: diffusion.masked_sample(SCHEDULE, smooth_toy_eps, x, k, start_step=50, generator=seeded(45)),
        lambda x, k: diffusion.training_loss(SCHEDULE, smooth_toy_eps, x, generator=seeded(45)),
    ):
        on_cpu = run(x, known)
        on_gpu = run(x.cuda(), known.cuda())
        assert on_gpu.device.type == "cuda"
        torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=1e-4, atol=1e-4)


def test_masked_ddim_sample_keeps_known_entries_and_regenerates_the_rest():
    schedule = diffusion.DiffusionSchedule()
    x0 = torch.randn(2, 50, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    known = torch.zeros(2, 50, 1, dtype=torch.bool)
    known[:, :25] = True
    calls = []

    def eps_model(x, index):
        calls.append(int(index[0]))
        return 0.5 * x  # any smooth predictor: the test is about the masking, not the model

    steps = diffusion.sampling_steps(schedule, 10, "uniform")
    out = diffusion.masked_ddim_sample(schedule, eps_model, x0, known, steps,
                                       generator=torch.Generator().manual_seed(1))
    assert torch.equal(out[:, :25], x0[:, :25])
    assert not torch.allclose(out[:, 25:], x0[:, 25:])
    assert torch.isfinite(out).all() and len(calls) == 10
    again = diffusion.masked_ddim_sample(schedule, eps_model, x0, known, steps,
                                         generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again)


def test_masked_ddim_sample_rejects_a_mask_of_the_wrong_shape():
    schedule = diffusion.DiffusionSchedule()
    with pytest.raises(ValueError, match="known_mask"):
        diffusion.masked_ddim_sample(schedule, lambda x, i: x, torch.zeros(2, 5, 4), torch.ones(3, 5, 1).bool(),
                                     [10, 5])


# ----------------------------------------------------------------------------- Sampler


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_sampler_runs_the_sampler_functions_it_names(eta):
    x = torch.randn(2, 16, 4, generator=seeded(50))
    known = torch.arange(16).reshape(1, 16, 1) < 8
    ddpm, ddim = diffusion.Sampler("ddpm"), diffusion.Sampler("ddim", steps=7, eta=eta, spacing="quadratic")
    steps = diffusion.sampling_steps(SCHEDULE, 7, "quadratic")
    pairs = [
        (ddpm.sample(SCHEDULE, smooth_toy_eps, x, start=30, generator=seeded(51)),
         diffusion.ddpm_sample(SCHEDULE, smooth_toy_eps, x, start_step=30, generator=seeded(51))),
        (ddim.sample(SCHEDULE, smooth_toy_eps, x, generator=seeded(52)),
         diffusion.ddim_sample(SCHEDULE, smooth_toy_eps, x, steps, eta=eta, generator=seeded(52))),
        (ddim.sample(SCHEDULE, smooth_toy_eps, x, start=5, generator=seeded(53)),  # 7 steps capped at 5
         diffusion.ddim_sample(SCHEDULE, smooth_toy_eps, x, [5, 4, 3, 2, 1], eta=eta, generator=seeded(53))),
        (ddpm.inpaint(SCHEDULE, smooth_toy_eps, x, known, jump_length=50, resamples=2, generator=seeded(56)),
         diffusion.masked_sample(SCHEDULE, smooth_toy_eps, x, known, jump_length=50, resamples=2,
                                 generator=seeded(56))),
        (ddim.inpaint(SCHEDULE, smooth_toy_eps, x, known, generator=seeded(57)),
         diffusion.masked_ddim_sample(SCHEDULE, smooth_toy_eps, x, known, steps, eta=eta, generator=seeded(57))),
    ]
    for i, (through_sampler, direct) in enumerate(pairs):
        assert torch.equal(through_sampler, direct), i
    assert ddpm.network_calls(T) == T and ddim.network_calls(T) == 7
    assert ddpm.ddim_step_count is None and ddim.ddim_step_count == 7


def test_masked_ddim_with_nothing_known_is_plain_ddim_from_its_starting_noise():
    # The known-region replacement touches only known entries: with none known (and eta = 0, so
    # that its draws of known-region noise cannot shift the sampler's own), the path is DDIM's.
    x0 = torch.randn(3, 6, generator=seeded(60))
    steps = diffusion.sampling_steps(SCHEDULE, 9)
    inputs = []

    def recording_eps(x, index):
        inputs.append(x.clone())
        return smooth_toy_eps(x, index)

    masked = diffusion.masked_ddim_sample(SCHEDULE, recording_eps, x0, torch.zeros(1, 6, dtype=torch.bool), steps,
                                          generator=seeded(61))
    assert torch.equal(masked, diffusion.ddim_sample(SCHEDULE, smooth_toy_eps, inputs[0], steps))


@pytest.mark.parametrize("settings, name", [
    (diffusion.Sampler(sampler="euler"), "sampler"),
    (diffusion.Sampler(steps=0), "steps"),
    (diffusion.Sampler(steps=T + 1), "steps"),
    (diffusion.Sampler(steps=True), "steps"),
    (diffusion.Sampler(eta=-0.1), "eta"),
    (diffusion.Sampler(spacing="cosine"), "spacing"),
])
def test_sampler_validate_names_the_bad_setting(settings, name):
    with pytest.raises(ValueError, match=name):
        settings.validate(T)


def test_the_op_schema_offers_exactly_the_samplers_sampler_runs():
    from backend import op_schema

    assert sorted(op_schema.field("sample", "sampler").choices) == sorted(diffusion.SAMPLERS)
