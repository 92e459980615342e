"""The point template (config.PointTemplateConfig): config, network, checkpoints, sampling and
its training stage."""
import dataclasses

import pytest
import torch

from backend import pipelines
from backend.checkpoint import load_model, save_model
from backend.config import LionConfig, PointTemplateConfig, get_config
from backend.data.normalization import ShapeBoxNormalization
from backend.models import LionModel
from backend.models.template import LatentPointTemplate
from backend.metrics import chamfer_distance
from backend.train.template import decoded_loss, random_subset, template_loss
from tests.backend.test_models import NUM_POINTS, micro_config
from test_train import check_interrupted_then_resumed_equals_uninterrupted, finish, logged_steps, train


def with_template(config, hidden=(32, 48)):
    return dataclasses.replace(config, point_template=PointTemplateConfig(hidden_channels=list(hidden)))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return LionModel(with_template(micro_config())).eval()


def test_config_round_trip_and_configs_written_before_the_template_still_load():
    config = with_template(get_config("tiny"))
    assert LionConfig.from_json(config.to_json()) == config
    old = get_config("tiny").to_dict()
    del old["point_template"]
    assert LionConfig.from_dict(old).point_template.hidden_channels == []
    assert not get_config("paper").point_template.hidden_channels, "paper stays LION's architecture"
    data = config.to_dict()
    data["point_template"]["hidden_channels"] = [64, 0]
    with pytest.raises(ValueError, match="point_template.hidden_channels"):
        LionConfig.from_dict(data)


def test_template_maps_each_shape_latent_to_all_latent_points(model):
    template = model.point_template
    points = template(torch.randn(3, 128))
    assert points.shape == (3, NUM_POINTS, model.config.latent_point_dim)
    # each shape's points depend on its own latent only
    alone = template(torch.randn(3, 128)[:1])
    assert alone.shape == (1, NUM_POINTS, model.config.latent_point_dim)
    for bad in (torch.randn(128), torch.randn(2, 64), torch.randn(2, 1, 128)):
        with pytest.raises(ValueError, match="shape_latent must be"):
            template(bad)
    with pytest.raises(ValueError, match="hidden width"):
        LatentPointTemplate(PointTemplateConfig(), 128, NUM_POINTS, 4)


def test_per_point_template_shares_one_network_over_all_points():
    config = PointTemplateConfig(hidden_channels=[32], point_hidden_channels=[24, 16], point_code_channels=8)
    torch.manual_seed(0)
    template = LatentPointTemplate(config, 128, NUM_POINTS, 4)
    shape_latent = torch.randn(3, 128)
    points = template(shape_latent)
    assert points.shape == (3, NUM_POINTS, 4)
    # the twin: the unsplit first layer on [feature, code], point by point
    feature = template.mlp(shape_latent)
    weight = torch.cat([template.feature_in.weight, template.code_in.weight], dim=1)
    for shape in range(3):
        for point in (0, NUM_POINTS // 2, NUM_POINTS - 1):
            joined = torch.cat([feature[shape], template.codes[point]])
            expected = template.point_mlp(joined @ weight.T + template.feature_in.bias)
            assert torch.allclose(points[shape, point], expected, atol=1e-5)
    assert sum(p.numel() for p in template.parameters()) < sum(
        p.numel() for p in LatentPointTemplate(PointTemplateConfig([32, 32]), 128, NUM_POINTS, 4).parameters())
    tiny = dataclasses.replace(get_config("tiny"), point_template=config)
    assert LionConfig.from_json(tiny.to_json()) == tiny
    data = tiny.to_dict()
    data["point_template"]["point_code_channels"] = 0
    with pytest.raises(ValueError, match="point_code_channels"):
        LionConfig.from_dict(data)


def test_models_without_a_template_have_none_and_count_no_parameters():
    plain = LionModel(micro_config())
    assert plain.point_template is None and "point_template" not in plain.parameter_counts()
    counts = LionModel(with_template(micro_config())).parameter_counts()
    assert counts["point_template"] > 0
    parts = ("vae", "shape_prior", "point_prior", "point_template")
    assert counts["total"] == sum(counts[name] for name in parts)


def test_sample_takes_latent_points_from_the_template_in_one_pass(model):
    settings = pipelines.SamplerSettings(steps=3)
    seen = []
    first = pipelines.sample(model, 2, torch.Generator().manual_seed(4), settings,
                             progress=lambda step, total, stage: seen.append((stage, step, total)))
    assert seen == [("shape latent", i, 3) for i in range(1, 4)] + [("latent points", 1, 1)]
    assert torch.equal(first, pipelines.sample(model, 2, torch.Generator().manual_seed(4), settings))
    assert not torch.allclose(first, pipelines.sample(model, 2, torch.Generator().manual_seed(5), settings))



def test_sample_with_a_template_never_consults_the_h0_prior(model, monkeypatch):
    def h0_prior(*args, **kwargs):
        raise AssertionError("the h0 prior was used")

    monkeypatch.setattr(model, "point_eps_model", h0_prior)
    assert pipelines.sample(model, 1, torch.Generator().manual_seed(0), pipelines.SamplerSettings(steps=2)).shape == \
        (1, NUM_POINTS, 3)


@pytest.mark.parametrize("per_point", [False, True])
def test_checkpoint_round_trip_keeps_the_template(model, tmp_path, per_point):
    if per_point:
        torch.manual_seed(1)
        model = LionModel(dataclasses.replace(micro_config(), point_template=PointTemplateConfig(
            hidden_channels=[32], point_hidden_channels=[16], point_code_channels=4))).eval()
    save_model(tmp_path / "model.safetensors", model, step=3)
    loaded, _ = load_model(tmp_path / "model.safetensors")
    assert loaded.config.point_template == model.config.point_template
    z = torch.randn(2, 128)
    with torch.no_grad():
        assert torch.equal(loaded.point_template(z), model.point_template(z))


def test_drop_point_template_removes_module_and_config_entry():
    dropped = LionModel(with_template(micro_config()))
    dropped.drop_point_template()
    assert dropped.point_template is None and dropped.config.point_template.hidden_channels == []
    assert not any(name.startswith("point_template.") for name in dropped.state_dict())


def test_random_subset_keeps_rows_of_each_set_without_repeats():
    generator = torch.Generator().manual_seed(0)
    points = torch.arange(2 * 10 * 3, dtype=torch.float32).view(2, 10, 3)
    chosen = random_subset(points, 4, generator)
    assert chosen.shape == (2, 4, 3)
    for original, subset in zip(points, chosen):
        rows = {tuple(row.tolist()) for row in original}
        picked = [tuple(row.tolist()) for row in subset]
        assert set(picked) <= rows and len(set(picked)) == 4
    assert random_subset(points, 0, generator) is points and random_subset(points, 10, generator) is points


def test_template_loss_falls_when_fitting_two_shapes_latent_points():
    torch.manual_seed(0)
    template = LatentPointTemplate(PointTemplateConfig([64]), 8, 32, 4)
    shape_latent = torch.randn(2, 8)
    target = torch.randn(2, 32, 4)
    optimizer = torch.optim.Adam(template.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(150):
        loss, scalars = template_loss(template, shape_latent, target, 0, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(scalars["loss"])
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])


def test_decoded_loss_is_the_chamfer_distance_of_the_decoding_and_trains_the_template():
    torch.manual_seed(0)
    template = LatentPointTemplate(PointTemplateConfig([16]), 8, 32, 4)
    shape_latent, points = torch.randn(2, 8), torch.randn(2, 32, 3)
    decoder = lambda z, latent_points: 2 * latent_points[..., :3]  # noqa: E731 (a frozen stand-in)
    loss, scalars = decoded_loss(template, decoder, shape_latent, points)
    expected = chamfer_distance(2 * template(shape_latent)[..., :3], points).mean()
    torch.testing.assert_close(loss, expected)
    assert scalars["loss_decoded"] == pytest.approx(expected.item())
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in template.parameters())


@pytest.fixture
def tiny_model(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "tiny.safetensors"
    save_model(str(path), LionModel(get_config("tiny"), ShapeBoxNormalization()), step=0,
               extra={"stage": "prior", "trained_parts": ["vae", "shape_prior", "point_prior"],
                      "typical_half_extent": 0.75})
    return path


# The decoded loss runs the decoder each step: slow enough for the interrupt to land mid-run.
TEMPLATE_OPTIONS = ["--hidden", "16,32", "--match-points", "64", "--encodings-per-shape", "1", "--decoded-weight", "1"]


def test_template_stage_resumes_exactly_and_extends_the_model(tmp_path, tiny_model):
    whole = check_interrupted_then_resumed_equals_uninterrupted(
        "template", tmp_path, "--model", str(tiny_model), *TEMPLATE_OPTIONS)
    source, _ = load_model(tiny_model)
    model, metadata = load_model(whole / "model.safetensors")
    assert metadata["stage"] == "template" and metadata["step"] == 4
    assert metadata["trained_parts"] == ["vae", "shape_prior", "point_prior", "point_template"]
    assert model.config.point_template.hidden_channels == [16, 32]
    for name, value in source.state_dict().items():  # the rest of the model is carried unchanged
        assert torch.equal(model.state_dict()[name], value), name
    logged = [entry for entry in logged_steps(whole) if "loss" in entry]
    assert len(logged) == 4 and all(entry["loss"] > entry["loss_decoded"] > 0 for entry in logged)
    samples = pipelines.sample(model.eval(), 1, torch.Generator().manual_seed(0), pipelines.SamplerSettings(steps=2))
    assert samples.shape == (1, model.config.vae.num_points, 3) and torch.isfinite(samples).all()

    # a second phase trains the same template on
    code, output = finish(train("template", tmp_path / "continued", "--model", str(whole / "model.safetensors"),
                                "--continue-template", "--hidden", "8", "--match-points", "64",
                                "--encodings-per-shape", "1", steps=1))
    assert code == 0, output
    continued, _ = load_model(tmp_path / "continued" / "model.safetensors")
    assert continued.config.point_template.hidden_channels == [16, 32], "--hidden is ignored when continuing"
    assert any(not torch.equal(value, model.point_template.state_dict()[name])
               for name, value in continued.point_template.state_dict().items())
    code, output = finish(train("template", tmp_path / "no_template", "--model", str(tiny_model),
                                "--continue-template", steps=1))
    assert code != 0 and "has no point template" in output

    # retraining the VAE from this model drops the template fitted to the old latents
    code, output = finish(train("vae", tmp_path / "vae", "--init", str(whole / "model.safetensors"), steps=1))
    assert code == 0, output
    retrained, _ = load_model(tmp_path / "vae" / "model.safetensors")
    assert retrained.point_template is None and retrained.config.point_template.hidden_channels == []
    # so does training priors from it: its renders and samples must show the priors
    code, output = finish(train("prior", tmp_path / "prior", "--vae", str(whole / "model.safetensors"), steps=1))
    assert code == 0, output
    priors, metadata = load_model(tmp_path / "prior" / "model.safetensors")
    assert priors.point_template is None and "point_template" not in metadata["trained_parts"]


def test_a_template_of_means_draws_fresh_shapes_from_its_own_z0_prior():
    config = dataclasses.replace(micro_config(), point_template=PointTemplateConfig(
        hidden_channels=[16], shape_latent="mean"))
    config.shape_prior.categories = ["chair", "table"]
    torch.manual_seed(0)
    model = LionModel(config).eval()
    own = model.point_template.shape_prior
    assert model.generation_shape_prior is own and own is not model.shape_prior
    assert "point_template.shape_prior.output_proj.weight" in model.state_dict()
    with torch.no_grad():
        for weight in own.parameters():
            weight.add_(0.1 * torch.randn_like(weight))
    x, index = torch.randn(3, 128), torch.tensor([5, 500, 900])
    # the twin: the same guided prediction from a model whose shape prior is that prior
    twin = LionModel(config).eval()
    twin.shape_prior.load_state_dict(own.state_dict())
    for category, guidance in ((None, 1.0), ("chair", 1.0), ("table", 2.5)):
        torch.testing.assert_close(model.shape_eps_model(category, guidance, prior=own)(x, index),
                                   twin.shape_eps_model(category, guidance)(x, index))
    settings = pipelines.SamplerSettings(steps=3)
    made = pipelines.sample(model, 2, torch.Generator().manual_seed(0), settings, category="chair")
    model.point_template.shape_prior = model.shape_prior  # the same model drawing from the shape prior
    assert not torch.allclose(made, pipelines.sample(model, 2, torch.Generator().manual_seed(0), settings,
                                                     category="chair"))
    bad = config.to_dict()
    bad["point_template"]["shape_latent"] = "median"
    with pytest.raises(ValueError, match="shape_latent"):
        LionConfig.from_dict(bad)


def test_template_stage_of_means_trains_its_own_z0_prior_and_resumes_exactly(tmp_path, tiny_model):
    options = ["--hidden", "16", "--point-hidden", "8", "--point-code", "4", "--match-points", "64",
               "--encodings-per-shape", "1", "--shape-latent", "mean", "--decoded-weight", "1"]
    whole = check_interrupted_then_resumed_equals_uninterrupted("template", tmp_path, "--model", str(tiny_model),
                                                                *options)
    source, _ = load_model(tiny_model)
    model, _ = load_model(whole / "model.safetensors")
    assert model.config.point_template.shape_latent == "mean"
    assert model.config.point_template.point_hidden_channels == [8]
    own = model.point_template.shape_prior
    changed = [name for name, value in own.state_dict().items()
               if not torch.equal(value, source.shape_prior.state_dict()[name])]
    assert changed, "the template's z0 prior was trained"
    for name, value in source.shape_prior.state_dict().items():
        assert torch.equal(model.shape_prior.state_dict()[name], value), "the model's own z0 prior is untouched"
    logged = [entry for entry in logged_steps(whole) if "loss" in entry]
    assert all(entry["loss_shape_latent"] > 0 for entry in logged)
    # continuing keeps the kind and the prior; asking for samples drops the prior
    for kind, has_prior in ((None, True), ("sample", False)):
        out = tmp_path / f"continued_{kind}"
        code, output = finish(train("template", out, "--model", str(whole / "model.safetensors"), "--continue-template",
                                    "--match-points", "64", "--encodings-per-shape", "1",
                                    *(["--shape-latent", kind] if kind else []), steps=1))
        assert code == 0, output
        continued, _ = load_model(out / "model.safetensors")
        assert hasattr(continued.point_template, "shape_prior") == has_prior
        assert continued.config.point_template.shape_latent == (kind or "mean")


def test_trained_parts_add_the_stages_part_once():
    from backend.train.runtime import trained_parts

    assert trained_parts({}, "point_template") == ["vae", "point_template"]
    source = {"trained_parts": ["vae", "shape_prior", "point_prior", "point_template"]}
    assert trained_parts(source, "point_template") == source["trained_parts"]
    assert trained_parts(source, "voxel_encoder") == source["trained_parts"] + ["voxel_encoder"]


def test_template_stage_refuses_bad_widths(tmp_path, tiny_model):
    code, output = finish(train("template", tmp_path / "bad", "--model", str(tiny_model), "--hidden", "16,0"))
    assert code != 0 and "--hidden" in output
