"""Pipelines over a LionModel, in-process: the properties that hold for any weights."""
import copy

import numpy as np
import pytest
import torch

from backend import diffusion, pipelines
from backend.config import get_config
from backend.data.procedural import sample_shape_points
from backend.metrics import chamfer_distance
from backend.models import LionModel


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return LionModel(get_config("tiny")).eval()


@pytest.fixture(scope="module")
def chair():
    points = torch.from_numpy(sample_shape_points("chair", 0, 2048)).float()
    return (points - points.mean(0)) / points.abs().max()


def test_variations_move_further_from_the_input_as_tau_grows(model, chair):
    distances = []
    for tau in (5, 50, 200, 600):
        generated = pipelines.variations(model, chair, 2, tau, torch.Generator().manual_seed(0),
                                         pipelines.SamplerSettings(steps=8))
        distances.append(chamfer_distance(generated, chair[None].expand(2, -1, -1)).mean().item())
    assert distances == sorted(distances), distances
    assert distances[0] < 0.01, "a few steps of noise stay close to the input"


def test_same_generator_seed_gives_the_same_shapes(model):
    settings = pipelines.SamplerSettings(steps=3)
    first = pipelines.sample(model, 2, torch.Generator().manual_seed(4), settings)
    again = pipelines.sample(model, 2, torch.Generator().manual_seed(4), settings)
    other = pipelines.sample(model, 2, torch.Generator().manual_seed(5), settings)
    assert torch.equal(first, again) and not torch.allclose(first, other)


def test_progress_sees_every_network_step_of_both_stages(model):
    seen = []
    pipelines.sample(model, 1, torch.Generator().manual_seed(0), pipelines.SamplerSettings(steps=4),
                     progress=lambda step, total, stage: seen.append((stage, step, total)))
    assert seen == [("shape latent", i, 4) for i in range(1, 5)] + [("latent points", i, 4) for i in range(1, 5)]


@pytest.mark.parametrize("settings, message", [
    (pipelines.SamplerSettings(sampler="euler"), "sampler"),
    (pipelines.SamplerSettings(steps=0), "steps"),
    (pipelines.SamplerSettings(eta=2.0), "eta"),
])
def test_bad_sampler_settings_are_refused(model, settings, message):
    with pytest.raises(ValueError, match=message):
        pipelines.sample(model, 1, torch.Generator(), settings)


def test_regenerate_region_needs_a_matching_bool_mask(model, chair):
    with pytest.raises(ValueError, match="keep"):
        pipelines.regenerate_region(model, chair, torch.ones(10, dtype=torch.bool), torch.Generator())


@pytest.fixture(scope="module")
def categorized():
    torch.manual_seed(1)
    config = get_config("tiny")
    config.diffusion.prediction = "v"
    config.shape_prior.categories = ["chair", "table"]
    model = LionModel(config).eval()
    torch.nn.init.normal_(model.shape_prior.category_embedding.weight)
    return model


@torch.no_grad()
def test_guided_noise_prediction_is_the_classifier_free_mix(categorized):
    z_t, index = torch.randn(3, 128), torch.tensor([5, 500, 999])
    prior, schedule = categorized.shape_prior, categorized.schedule
    labels = lambda label: torch.full((3,), label, dtype=torch.int64)  # noqa: E731
    conditional, unconditional = prior(z_t, index, labels(1)), prior(z_t, index, labels(2))
    alpha_bar = schedule.alphas_cumprod[index + 1].float()[:, None]
    eps = lambda v: alpha_bar.sqrt() * v + (1 - alpha_bar).sqrt() * z_t  # noqa: E731  (v-prediction)
    guided = categorized.shape_eps_model("table", guidance=2.5)(z_t, index)
    torch.testing.assert_close(guided, eps(unconditional + 2.5 * (conditional - unconditional)), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(categorized.shape_eps_model("any")(z_t, index), eps(unconditional))
    # guidance 1 skips the unconditional branch: the same as the mix with w = 1
    torch.testing.assert_close(categorized.shape_eps_model("table", guidance=1.0)(z_t, index), eps(conditional))
    with pytest.raises(ValueError, match="category must be one of: any, chair, table"):
        categorized.shape_eps_model("lamp")


@torch.no_grad()
@pytest.mark.parametrize("guidance", [1.0, 2.5])
def test_one_category_per_shape_predicts_as_each_category_alone(categorized, guidance):
    z_t, index = torch.randn(3, 128), torch.tensor([5, 500, 999])
    names = ["table", "chair", "table"]
    together = categorized.shape_eps_model(names, guidance)(z_t, index)
    for row, name in enumerate(names):
        alone = categorized.shape_eps_model(name, guidance)(z_t[row:row + 1], index[row:row + 1])
        torch.testing.assert_close(together[row:row + 1], alone)
    with pytest.raises(ValueError, match="3 categories for a batch of 2"):
        categorized.shape_eps_model(names)(z_t[:2], index[:2])
    with pytest.raises(ValueError, match="'any' is not one"):
        categorized.shape_eps_model(["chair", "any"])


def with_shares(model, shares):
    drawing = copy.deepcopy(model)
    drawing.config.shape_prior.category_shares = shares
    return drawing


def test_categories_are_drawn_as_often_as_the_training_data_held_them(categorized):
    assert categorized.draw_categories(4, torch.Generator()) is None, "no shares recorded: nothing to draw from"
    drawn = with_shares(categorized, [0.25, 0.75]).draw_categories(4000, torch.Generator().manual_seed(0))
    assert set(drawn) == {"chair", "table"}
    assert abs(drawn.count("table") / 4000 - 0.75) < 0.03  # 4.4 standard deviations
    assert set(with_shares(categorized, [0.0, 1.0]).draw_categories(50, torch.Generator())) == {"table"}


@torch.no_grad()
def test_any_category_draws_one_per_shape_then_samples_given_it(categorized):
    """"any" on a model with shares: its twin written out, the draw then plain conditional sampling."""
    drawing = with_shares(categorized, [0.5, 0.5])
    settings = pipelines.SamplerSettings(steps=2)
    made = pipelines.sample(drawing, 3, torch.Generator().manual_seed(3), settings, category="any", guidance=4.0)
    generator = torch.Generator().manual_seed(3)
    names = drawing.draw_categories(3, generator)
    expected = pipelines.sample(categorized, 3, generator, settings, category=names, guidance=1.0)
    assert torch.equal(made, expected)
    # without shares, "any" is the prior's own "no category" prediction
    plain = pipelines.sample(categorized, 3, torch.Generator().manual_seed(3), settings, category="any")
    assert torch.equal(plain, pipelines.sample(categorized, 3, torch.Generator().manual_seed(3), settings))
    assert not torch.equal(plain, made)


@torch.no_grad()
def test_the_inferred_category_is_the_one_whose_prediction_recovers_the_noise(categorized):
    """infer_category against its definition written out: the summed squared noise error of
    each category's conditional prediction over the same fixed draws, the least wins."""
    z0 = torch.randn(4, 128, generator=torch.Generator().manual_seed(5))
    generator = pipelines._fixed_generator()
    errors = torch.zeros(4, 2)
    for step in pipelines.CATEGORY_TEST_STEPS:
        index = torch.full((4,), step - 1, dtype=torch.int64)
        for _ in range(pipelines.CATEGORY_TEST_DRAWS):
            noise = torch.randn(z0.shape, generator=generator)
            noisy = diffusion.q_sample(categorized.schedule, z0, step, noise)
            for label, name in enumerate(["chair", "table"]):
                predicted = categorized.shape_eps_model(name, guidance=1.0)(noisy, index)
                errors[:, label] += (predicted - noise).square().mean(dim=1)
    expected = [["chair", "table"][i] for i in errors.argmin(dim=1).tolist()]
    assert pipelines.infer_category(categorized, z0) == expected
    assert pipelines.infer_category(categorized, z0) == expected, "deterministic"


def test_a_model_without_categories_infers_none(model, chair):
    assert pipelines.shape_category(model, chair) is None


def test_unconditional_model_refuses_a_category(model):
    assert model.categories == []
    with pytest.raises(ValueError, match="unconditional"):
        pipelines.sample(model, 1, torch.Generator().manual_seed(0), pipelines.SamplerSettings(steps=2), category="chair")


@torch.no_grad()
def test_shapes_are_encoded_to_reproducible_posterior_samples(model, chair):
    points = chair[None].expand(2, -1, -1)
    z_a, h_a = pipelines.encode(model, points, torch.Generator().manual_seed(3))
    z_b, h_b = pipelines.encode(model, points, torch.Generator().manual_seed(3))
    assert torch.equal(z_a, z_b) and torch.equal(h_a, h_b)
    encoding = model.vae.encode(points, sample=False)
    # Samples, not means: each row draws its own noise around the posterior mean.
    assert not torch.equal(z_a, encoding.shape_latent_mean) and not torch.equal(z_a[0], z_a[1])


@torch.no_grad()
def test_inverted_variations_come_back_to_the_input_when_the_shape_latent_stays(model, chair, monkeypatch):
    """With DDIM, variations invert the latent points along the model's own path and sample them
    back given the new z0: if z0 came back unchanged, so would the shape (up to the inversion's
    error), whatever the weights; the voxel-guide path (fresh noise) does not."""
    settings = pipelines.SamplerSettings(steps=10)
    generator = torch.Generator().manual_seed(0)
    z, h = pipelines.encode(model, chair[None], torch.Generator().manual_seed(0))
    original = pipelines.diffusion.diffuse_denoise
    monkeypatch.setattr(pipelines.diffusion, "diffuse_denoise",
                        lambda schedule, eps_model, x0, tau, **kwargs: x0 if x0.shape[-1] == z.shape[-1]
                        else original(schedule, eps_model, x0, tau, **kwargs))
    seen = []
    back = pipelines.variations(model, chair, 1, 200, torch.Generator().manual_seed(0), settings,
                                progress=lambda step, total, stage: seen.append(stage))
    reconstruction = model.vae.decode(z, h)
    assert seen == ["inverting latent points"] * 10 + ["latent points"] * 10
    fresh = pipelines.variations(model, chair, 1, 200, generator, settings, invert_points=False)
    # Untrained weights invert only roughly in 10 steps, but far better than fresh noise comes back.
    assert chamfer_distance(back, reconstruction).item() < 0.2 * chamfer_distance(fresh, reconstruction).item()



@pytest.mark.parametrize("count, dims, seed", [(1, 3, 0), (2, 3, 1), (5, 3, 2), (6, 4, 3), (6, 3, 4)])
def test_point_matching_finds_the_cheapest_pairing(count, dims, seed):
    """Against every permutation (the brute-force twin), on random points."""
    import itertools

    generator = torch.Generator().manual_seed(seed)
    a, b = torch.randn(count, dims, generator=generator), torch.randn(count, dims, generator=generator)
    order = pipelines.match_points(a, b)
    assert sorted(order.tolist()) == list(range(count))
    cost = lambda permutation: (a - b[list(permutation)]).square().sum().item()
    cheapest = min(cost(p) for p in itertools.permutations(range(count)))
    assert cost(order.tolist()) == pytest.approx(cheapest, rel=1e-9, abs=1e-12)


def test_point_matching_undoes_a_shuffle(chair):
    points = chair[:256]
    shuffle = torch.randperm(len(points), generator=torch.Generator().manual_seed(0))
    order = pipelines.match_points(points, points[shuffle])
    assert torch.equal(points[shuffle][order], points)


def test_interpolation_ends_are_the_inputs_round_trips_and_progress_completes(model, chair):
    table = torch.from_numpy(sample_shape_points("table", 0, 2048)).float()
    table = (table - table.mean(0)) / table.abs().max()
    seen = []
    settings = pipelines.SamplerSettings(steps=5)
    frames = pipelines.interpolate(model, chair, table, 4, settings, progress=lambda *call: seen.append(call),
                                   depth=100)
    assert frames.shape == (4, 2048, 3)
    # One tick per step: z0 and latent points inverted (5 steps from T, 5 from 100), then sampled.
    assert [step for step, _, _ in seen] == list(range(1, 21)) and {total for _, total, _ in seen} == {20}
    # The end frames decode the inverted-and-sampled latents of A and of B (B's points reordered):
    # as close to each input as a plain encode-decode is, far closer than A to B.
    latents = pipelines.encode(model, torch.stack([chair, table]), pipelines._fixed_generator())
    decoded = model.vae.decode(*latents)
    for frame, shape, reference in ((frames[0], chair, decoded[0]), (frames[-1], table, decoded[1])):
        error = chamfer_distance(frame[None], reference[None]).item()
        assert error < 0.1 * chamfer_distance(chair[None], table[None]).item(), error
    with pytest.raises(ValueError, match="tau"):
        pipelines.interpolate(model, chair, table, 3, settings, depth=0)


@pytest.mark.parametrize("num_steps", [1000, 100, 7])
def test_similarity_maps_onto_every_step_from_1_to_t(num_steps):
    to_tau = pipelines.tau_from_similarity
    assert to_tau(1.0, num_steps) == 1 and to_tau(0.0, num_steps) == num_steps and to_tau(1, num_steps) == 1
    if num_steps == 1000:
        assert to_tau(0.7, num_steps) == 300  # the add-on's default similarity
    steps = [to_tau(s, num_steps) for s in np.linspace(0.0, 1.0, 2001).tolist()]
    assert all(a >= b for a, b in zip(steps, steps[1:])), "more similar never means more noise"
    assert set(steps) == set(range(1, num_steps + 1))
    for bad in (-0.01, 1.01, float("nan"), "0.5", True, None):
        with pytest.raises(ValueError, match="similarity"):
            to_tau(bad, num_steps)
