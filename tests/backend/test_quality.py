"""The measures behind ablations and the model card, and renders that keep the true scale."""
import numpy as np
import pytest
import torch
from PIL import Image

from backend import quality
from backend.metrics import chamfer_distance
from backend.render import contact_sheet, half_extent, render_points


def blob(center, spread, count=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.tensor(center, dtype=torch.float32) + spread * torch.randn(count, 3, generator=generator)


def test_nearest_categories_and_shares():
    reference = torch.stack([blob([0, 0, 0], 0.1, seed=1), blob([5, 0, 0], 0.1, seed=2)])
    generated = torch.stack([blob([0.1, 0, 0], 0.1, seed=3), blob([4.9, 0, 0], 0.1, seed=4),
                             blob([5.2, 0, 0], 0.1, seed=5)])
    found = quality.nearest_categories(generated, reference, ["chair", "table"])
    assert found == ["chair", "table", "table"]
    assert quality.category_shares(found) == {"chair": pytest.approx(1 / 3), "table": pytest.approx(2 / 3)}
    assert quality.category_shares(found, wanted=["chair", "chair", "table"]) == {"chair": 0.5, "table": 1.0}


def test_interpolation_checks_pass_a_straight_morph_and_catch_a_detour_and_a_jump():
    a, b = blob([0, 0, 0], 0.3, seed=1), blob([3, 0, 0], 0.3, seed=2)
    weights = torch.linspace(0, 1, 6)[:, None, None]
    straight = (1 - weights) * a + weights * b
    checks = quality.interpolation_checks(straight, a, b, 0.01, 0.01)
    assert checks["all"] and checks["detour"] < 1.1, checks
    # Middle frames pushed off the way (up in z): the ends hold, the detour shows it.
    off = straight.clone()
    off[1:-1, :, 2] += 4.0
    checks = quality.interpolation_checks(off, a, b, 0.01, 0.01)
    assert checks["starts_at_a"] and checks["ends_at_b"] and checks["detour"] > 2, checks
    # Back and forth: distance to B grows twice, so it does not near B; and the reversed morph
    # starts at B.
    zigzag = straight[[0, 2, 1, 3, 2, 5]]
    assert not quality.interpolation_checks(zigzag, a, b, 0.01, 0.01)["nears_b"]
    assert not quality.interpolation_checks(straight.flip(0), a, b, 0.01, 0.01)["starts_at_a"]
    # One step carrying nearly the whole move.
    jump = torch.stack([a, a, a + 0.01, b - 0.01, b, b])
    assert not quality.interpolation_checks(jump, a, b, 0.01, 0.01)["even_steps"]


def test_half_extent_is_the_median_half_longest_side():
    shapes = torch.zeros(3, 4, 3)
    for i, side in enumerate((2.0, 4.0, 10.0)):
        shapes[i, 1, 0] = side
    assert quality.half_extent(shapes) == pytest.approx(2.0)


def test_generation_report_sees_a_blow_up_in_the_scale():
    reference = torch.stack([blob([0, 0, 0], 0.5, seed=s) for s in range(4)])
    exploded = 30 * torch.stack([blob([0, 0, 0], 0.5, seed=10 + s) for s in range(4)])
    report = quality.generation_report(exploded, reference, ["a"] * 4, baseline=reference.flip(0))
    assert report["half_extent"] > 20 * report["reference_half_extent"]
    assert report["1-NNA-CD"] == 1.0 and report["finite"]


def test_true_scale_sheet_shares_one_scale_and_labels_sizes(tmp_path):
    small, large = blob([0, 0, 0], 0.1).numpy(), blob([0, 0, 0], 3.0, seed=1).numpy()
    fitted = np.asarray(render_points(small))
    path = contact_sheet([small, large], str(tmp_path / "sheet.png"), columns=2, true_scale=True)
    sheet = np.asarray(Image.open(path))
    inked = lambda tile: (tile < 250).any(axis=2).sum()  # noqa: E731
    # Fitted alone, the small cloud fills its tile; at the large one's scale it is a speck.
    assert inked(sheet[40:, :256]) < 0.2 * inked(fitted[40:])
    assert half_extent(large) > 5 * half_extent(small)
    assert inked(sheet[:16, :256]) > 0, "each tile is labelled with its half extent"


def test_noise_error_of_a_prior_that_predicts_no_noise_is_one():
    from backend.config import get_config
    from backend.models import LionModel

    torch.manual_seed(0)
    model = LionModel(get_config("tiny")).eval()
    torch.nn.init.zeros_(model.point_prior.unet.head_out.weight)
    torch.nn.init.zeros_(model.point_prior.unet.head_out.bias)
    errors = quality.noise_error_by_step(model, blob([0, 0, 0], 0.4, count=2048)[None], steps=(10, 500))
    assert set(errors) == {10, 500} and all(abs(e - 1.0) < 0.1 for e in errors.values())


@torch.no_grad()
def encoded_blobs():
    """(untrained tiny model, two blob shapes [2, 2048, 3], their posterior samples z0 and h0 with
    generator seed 0 (as the quality measures draw them), the VAE's reconstruction error)."""
    from backend.config import get_config
    from backend.metrics import chamfer_distance
    from backend.models import LionModel
    from backend.pipelines import encode

    torch.manual_seed(0)
    model = LionModel(get_config("tiny")).eval()
    shapes = torch.stack([blob([0, 0, 0], 0.4, count=2048), blob([0.2, 0, 0], 0.6, count=2048, seed=1)])
    shape_latent, latent_points = encode(model, shapes, torch.Generator().manual_seed(0))
    reconstruction = float(chamfer_distance(model.vae.decode(shape_latent, latent_points), shapes).mean())
    return model, shapes, shape_latent, latent_points, reconstruction


def test_point_prior_chamfer_of_a_perfect_point_prior_is_the_reconstruction_error(monkeypatch):
    """An h0 prior that knows the shape's own latent points (its noise prediction is exact)
    samples them back, so the measure falls to the VAE's reconstruction error; the untrained
    prior lands far above it."""
    model, shapes, _, latent_points, reconstruction = encoded_blobs()
    with torch.no_grad():
        untrained = quality.point_prior_chamfer(model, shapes, steps=5)
    abar = model.schedule.alphas_cumprod

    def exact_noise(_shape_latent):
        def predict(x, index):  # index = step - 1, as samplers call the networks
            a = abar[index + 1].view(-1, 1, 1).float()
            return (x - a.sqrt() * latent_points) / (1 - a).sqrt()
        return predict

    monkeypatch.setattr(model, "point_eps_model", exact_noise)
    perfect = quality.point_prior_chamfer(model, shapes, steps=5)
    assert perfect == pytest.approx(reconstruction, rel=1e-3)
    assert untrained > 2 * reconstruction


def test_point_template_chamfer_of_a_template_that_knows_the_latent_points_is_the_reconstruction_error():
    model, shapes, shape_latent, latent_points, reconstruction = encoded_blobs()
    model.point_template = lambda z: latent_points if torch.equal(z, shape_latent) else torch.zeros_like(latent_points)
    assert quality.point_template_chamfer(model, shapes) == pytest.approx(reconstruction)
    model.point_template = lambda z: torch.zeros_like(latent_points)  # every point at the origin
    assert quality.point_template_chamfer(model, shapes) > 2 * reconstruction
    # a template of posterior means is given the posterior means
    model.config.point_template.shape_latent = "mean"
    with torch.no_grad():
        means = model.vae.encode(shapes, sample=False).shape_latent_mean
        expected = float(chamfer_distance(model.vae.decode(means, latent_points), shapes).mean())
    model.point_template = lambda z: latent_points if torch.equal(z, means) else torch.zeros_like(latent_points)
    assert quality.point_template_chamfer(model, shapes) == pytest.approx(expected)
