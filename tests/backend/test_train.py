"""Training stages as a user runs them: real processes, exact resume, and torchrun with gloo."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = ["--data", "procedural:chair,table", "--shapes-per-category", "3", "--batch-size", "2"]
TIMEOUT_S = 900


def train(stage, out, *options, steps=4):
    command = [sys.executable, "-m", "backend.train", stage, "--out", str(out), "--steps", str(steps),
               "--checkpoint-every", "100", "--log-every", "1", "--device", "cpu", *DATA, *options]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=REPO_ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process):
    output, _ = process.communicate(timeout=TIMEOUT_S)
    return process.returncode, output


def logged_steps(out):
    path = os.path.join(out, "log.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def interrupt_after_first_step(process, out):
    deadline = time.monotonic() + TIMEOUT_S
    while not any("loss" in entry for entry in logged_steps(out)):
        assert process.poll() is None, finish(process)[1]
        assert time.monotonic() < deadline, "no training step was logged"
        # Short polls: a small stage's steps take ~30 ms, so a slower poll could let the run
        # finish all its steps before the interrupt arrives.
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)


def load_state(out):
    return torch.load(os.path.join(out, "state.pt"), weights_only=True)


def assert_same_tensors(a, b, path="state"):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{path} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{path} keys differ"
        for key in a:
            assert_same_tensors(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{path} lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def check_interrupted_then_resumed_equals_uninterrupted(stage, tmp_path, *options, steps=4):
    whole, parts = tmp_path / f"{stage}_whole", tmp_path / f"{stage}_parts"
    code, output = finish(train(stage, whole, *options, steps=steps))
    assert code == 0, output

    process = train(stage, parts, *options, steps=steps)
    interrupt_after_first_step(process, parts)
    code, output = finish(process)
    assert code == 130, output
    stopped_at = load_state(parts)["step"]
    assert 1 <= stopped_at < steps, "the interrupt must land mid-run for this test to mean anything"
    plant_what_a_killed_run_leaves(parts, stopped_at)

    code, output = finish(train(stage, parts, *options, "--resume", steps=steps))
    assert code == 0, output
    assert load_state(parts)["step"] == steps
    assert_same_tensors(load_state(whole), load_state(parts))
    assert not [name for name in os.listdir(parts) if name.endswith((".tmp", ".tmp.safetensors"))]
    trained = [entry["step"] for entry in logged_steps(parts) if "loss" in entry]
    assert trained == list(range(1, steps + 1)), "each step is logged once, in order"
    return whole


def plant_what_a_killed_run_leaves(out, checkpointed_step):
    """A SIGKILL after the last checkpoint leaves half-written files and log lines past it."""
    for name in ("state.pt.tmp", ".checkpoint-x1y2.tmp", "model.safetensors.tmp.safetensors"):
        (out / name).write_bytes(b"partial")
    with open(out / "log.jsonl", "a") as f:
        f.write(json.dumps({"step": checkpointed_step + 1, "loss": 1.0}) + "\n")
        f.write('{"step": 9')  # torn by the kill


@pytest.fixture(scope="module")
def trained_vae(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae")
    code, output = finish(train("vae", out, "--config", "tiny", steps=2))
    assert code == 0, output
    return out / "model.safetensors"


def test_vae_stage_resumes_exactly(tmp_path):
    whole = check_interrupted_then_resumed_equals_uninterrupted("vae", tmp_path, "--config", "tiny")
    assert (whole / "model.safetensors").is_file()
    assert any(name.endswith(".png") for name in os.listdir(whole / "renders"))
    losses = [entry["loss"] for entry in logged_steps(whole) if "loss" in entry]
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))


def test_prior_stage_resumes_exactly(tmp_path, trained_vae):
    # Mixed score and categories: the logits, the class embedding and both optimizers resume too.
    # Steps are cheap here (the data is encoded once), hence many of them, so the interrupt lands mid-run.
    whole = check_interrupted_then_resumed_equals_uninterrupted(
        "prior", tmp_path, "--vae", str(trained_vae), "--prediction", "mixed", "--mixing-logit-init", "-3",
        "--mixing-logit-lr-scale", "10", "--class-conditional", "--shape-steps-per-step", "2",
        "--encodings-per-shape", "2", "--lr-decay", "cosine", steps=60)
    factors = [entry["lr_factor"] for entry in logged_steps(whole) if "lr_factor" in entry]
    assert factors == pytest.approx([0.5 * (1 + math.cos(math.pi * step / 60)) for step in range(60)])
    from backend.checkpoint import load_model

    model, metadata = load_model(whole / "model.safetensors")
    assert metadata["stage"] == "prior" and metadata["step"] == 60
    assert model.config.diffusion.prediction == "mixed" and model.categories == ["chair", "table"]
    assert model.config.shape_prior.category_shares == [0.5, 0.5], "the data's p(category), 3 shapes of each"
    assert float(model.point_prior.mixing_logit.mean()) != -3.0, "the logits were trained"
    assert metadata["typical_half_extent"] > 0, "the data's scale travels from the VAE run to the prior's model"
    assert model.normalization is not None


def test_prior_stage_trains_the_chosen_point_prior_architecture(tmp_path, trained_vae):
    from backend.checkpoint import load_model
    from backend.config import get_point_prior

    out = tmp_path / "xyz"
    code, output = finish(train("prior", out, "--vae", str(trained_vae), "--point-prior", "tiny-xyz",
                                "--encodings-per-shape", "1", steps=2))
    assert code == 0, output
    model, _ = load_model(out / "model.safetensors")
    source, _ = load_model(trained_vae)
    assert not source.config.point_prior.unet.xyz_in_finest_skip
    assert model.config.point_prior == get_point_prior("tiny-xyz") and model.config.point_prior.unet.xyz_in_finest_skip
    assert model.config.vae == source.config.vae
    # the last propagation stage reads 3 more channels (xyz) than the released layout's
    widths = {name: value.shape for name, value in model.point_prior.state_dict().items()}
    released = {name: value.shape for name, value in source.point_prior.state_dict().items()}
    assert widths.keys() == released.keys()
    changed = [name for name in widths if widths[name] != released[name]]
    assert changed and all(widths[name][1] == released[name][1] + 3 for name in changed)
    latent_points = torch.randn(2, model.config.vae.num_points, model.config.latent_point_dim)
    predicted = model.point_prior(latent_points, torch.tensor(10), torch.randn(2, model.config.vae.shape_latent_dim))
    assert predicted.shape == latent_points.shape and torch.isfinite(predicted).all()

    code, output = finish(train("prior", tmp_path / "both", "--vae", str(out / "model.safetensors"),
                                "--point-prior", "tiny", "--continue-priors", steps=2))
    assert code != 0 and "--continue-priors" in output


def test_a_kept_point_prior_widened_to_see_xyz_computes_what_it_did():
    from backend.config import get_config, get_point_prior
    from backend.models import LionModel
    from backend.train.prior import continue_point_prior

    torch.manual_seed(0)
    model = LionModel(get_config("tiny")).eval()
    with torch.no_grad():  # a released-layout prior whose skip weights are not zero
        for parameter in model.point_prior.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    latent_points = torch.randn(2, model.config.vae.num_points, model.config.latent_point_dim)
    t, shape_latent = torch.tensor([3, 700]), torch.randn(2, model.config.vae.shape_latent_dim)
    before = model.point_prior(latent_points, t, shape_latent)
    continue_point_prior(model, get_point_prior("tiny-xyz"))
    assert model.config.point_prior.unet.xyz_in_finest_skip
    after = model.point_prior.eval()(latent_points, t, shape_latent)
    assert torch.allclose(after, before, atol=1e-5)
    # the new inputs are live: a nonzero xyz weight changes the output
    with torch.no_grad():
        weight = model.point_prior.unet.up[-1].mlp.convs[0].weight
        weight[:, -4:-1] += 0.5
    assert not torch.allclose(model.point_prior(latent_points, t, shape_latent), before, atol=1e-3)
    # other radii keep every weight; other widths cannot continue these weights
    continue_point_prior(model, get_point_prior("tiny-xyz-wide"))
    assert model.point_prior.unet.down[0].radius == 4 * get_point_prior("tiny-xyz").unet.down[0].radius
    assert torch.equal(model.point_prior.unet.up[-1].mlp.convs[0].weight, weight)
    with pytest.raises(SystemExit, match="does not fit"):
        continue_point_prior(model, get_point_prior("paper"))


def test_resume_of_a_folder_without_a_run_says_so(tmp_path):
    code, output = finish(train("vae", tmp_path / "empty", "--config", "tiny", "--resume", steps=2))
    assert code != 0 and "holds no run to continue" in output and "Traceback" not in output


def test_existing_run_is_not_overwritten_without_resume(tmp_path, trained_vae):
    out = trained_vae.parent
    code, output = finish(train("vae", out, "--config", "tiny", steps=2))
    assert code != 0 and "--resume" in output


def test_torchrun_two_processes_keep_identical_weights(tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "backend.train", "vae", "--config", "tiny", "--out", str(out), "--steps", "2",
               "--checkpoint-every", "1", "--device", "cpu", *DATA]
    result = subprocess.run(command, cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=REPO_ROOT, OMP_NUM_THREADS="1"),
                            capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = [entry["replica_checksums"] for entry in logged_steps(out) if "replica_checksums" in entry]
    assert len(checks) == 2
    for ranks in checks:
        assert len(ranks) == 2 and ranks[0] == ranks[1]
    assert checks[0] != checks[1], "the weights must change between steps for the comparison to mean anything"
