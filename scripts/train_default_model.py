"""The recipe of the default model shipped in models/: train, evaluate, package. One command:

    python3 build.py train-default [--runs runs/default] [--device auto]

(or, in the backend environment, `python scripts/train_default_model.py ...`).

1. Trains the `tiny` configuration on the procedural dataset with the project's own stages
   (`python -m backend.train ...`): the VAE, both priors, the voxel-guide encoder and the
   Shape As Points network. Each stage keeps its run folder under --runs; running the recipe
   again resumes an interrupted stage exactly and skips finished ones.
2. Evaluates generation against held-out procedural shapes (seeds the training set never
   saw) with `python -m backend.evaluate`: MMD, COV and 1-NNA with Chamfer distance.
3. Packages: models/default.safetensors (float16 weights), models/default-sap.safetensors
   (the reconstruction network) and models/default.md, the model card.

The settings below are the ones the shipped model was trained with, on a 2-core CPU; on a GPU
the same command runs them faster (raise the steps there to improve the model).
"""
import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

MODEL_NAME = "default"
DATA = ["--data", "procedural", "--shapes-per-category", "100"]  # 8 categories x 100 shapes
HELD_OUT_FIRST_SEED = 100_000  # evaluation shapes: seeds far from the training seeds 0..99
HELD_OUT_PER_CATEGORY = 8
EVALUATION_STEPS = 25  # DDIM steps of the evaluated samples, the add-on's default


def stages(runs):
    """(name, arguments of `python -m backend.train`, the file it produces) in training order."""
    vae, prior, voxel, sap = (os.path.join(runs, name) for name in ("vae", "prior", "voxel_encoder", "sap"))
    model = "model.safetensors"
    return [
        ("vae", ["vae", "--config", "tiny", *DATA, "--out", vae, "--steps", "3000", "--batch-size", "8",
                 "--checkpoint-every", "500", "--kl-max", "0.01", "--kl-anneal-portion", "0.3"],
         os.path.join(vae, model)),
        # 6527: where the shipped run was stopped (Ctrl-C) when its CPU time ran out.
        ("prior", ["prior", "--vae", os.path.join(vae, model), *DATA, "--out", prior, "--steps", "6527",
                   "--batch-size", "8", "--checkpoint-every", "500", "--ema", "0.999"],
         os.path.join(prior, model)),
        # Fine-tunes copies of the VAE's encoders only, so it starts from the VAE (and may run
        # beside the prior stage); packaging joins its voxel encoder to the trained priors.
        ("voxel_encoder", ["voxel-encoder", "--model", os.path.join(vae, model), *DATA, "--out", voxel,
                           "--steps", "300", "--batch-size", "8", "--checkpoint-every", "100"],
         os.path.join(voxel, model)),
        ("sap", ["sap", *DATA, "--out", sap, "--steps", "200", "--batch-size", "4", "--resolution", "64",
                 "--checkpoint-every", "100"],
         os.path.join(sap, "sap.safetensors")),
    ]


def train(runs, device, only=None):
    for name, arguments, product in stages(runs):
        if only and name not in only:
            continue
        run_dir = arguments[arguments.index("--out") + 1]
        state = os.path.join(run_dir, "state.pt")
        if os.path.isfile(product) and _finished(run_dir, arguments):
            print(f"[recipe] {name}: finished earlier ({product})", flush=True)
            continue
        command = [sys.executable, "-m", "backend.train", *arguments, "--device", device, "--seed", "0"]
        if os.path.isfile(state):
            command.append("--resume")
        print(f"[recipe] {name}: {' '.join(command)}", flush=True)
        started = time.time()
        subprocess.run(command, cwd=ROOT, check=True)
        print(f"[recipe] {name}: {time.time() - started:.0f} s", flush=True)


def _finished(run_dir, arguments):
    """Whether the run's log reached its last step."""
    steps = int(arguments[arguments.index("--steps") + 1])
    log_path = os.path.join(run_dir, "log.jsonl")
    if not os.path.isfile(log_path):
        return False
    with open(log_path) as f:
        last = max((json.loads(line).get("step", 0) for line in f if line.strip()), default=0)
    return last >= steps


def evaluate(model, out_dir):
    """Sample as many shapes as the held-out set has, and compare: the metrics dict."""
    import torch

    from backend.data.datasets import ProceduralDataset
    from backend.pipelines import SamplerSettings, sample

    device = next(model.parameters()).device
    held_out = ProceduralDataset(shapes_per_category=HELD_OUT_PER_CATEGORY, first_seed=HELD_OUT_FIRST_SEED,
                                 normalization=model.normalization, subsample="first")
    reference, center, scale = held_out.evaluation_arrays()
    os.makedirs(out_dir, exist_ok=True)
    np.save(os.path.join(out_dir, "reference.npy"), reference)
    np.savez(os.path.join(out_dir, "reference_stats.npz"), center=center, scale=scale)
    generator = torch.Generator("cpu").manual_seed(0)
    started = time.time()
    generated = []
    for first in range(0, len(reference), 16):
        count = min(16, len(reference) - first)
        with torch.no_grad():
            generated.append(sample(model, count, generator, SamplerSettings(steps=EVALUATION_STEPS)).cpu())
    generated = torch.cat(generated).numpy()
    print(f"[recipe] sampled {len(generated)} shapes in {time.time() - started:.0f} s", flush=True)
    np.save(os.path.join(out_dir, "generated.npy"), generated)
    metrics_path = os.path.join(out_dir, "metrics.json")
    subprocess.run([sys.executable, "-m", "backend.evaluate", "--generated", os.path.join(out_dir, "generated.npy"),
                    "--reference", os.path.join(out_dir, "reference.npy"),
                    "--reference-stats", os.path.join(out_dir, "reference_stats.npz"),
                    "--emd", "none", "--device", str(device), "--out", metrics_path],
                   cwd=ROOT, check=True)
    with open(metrics_path) as f:
        return json.load(f)


def evaluate_reconstruction(model, network_path, shapes_per_category=2):
    """Chamfer-L1 (mean of both directions, over the bounding-box diagonal) between meshes made
    from the model's own decoded points of held-out shapes and the shapes' dense points, for the
    network and for the fallback (estimated normals): {"network": ..., "estimated normals": ...}."""
    import torch
    import trimesh

    from backend.data.procedural import CATEGORIES, sample_shape_points
    from backend.sap.network import load_network
    from backend.sap.reconstruct import reconstruct

    device = next(model.parameters()).device
    network = load_network(network_path, device)
    errors = {"network": [], "estimated normals": []}
    for category in CATEGORIES:
        for seed in range(HELD_OUT_FIRST_SEED, HELD_OUT_FIRST_SEED + shapes_per_category):
            dense = sample_shape_points(category, seed, 10000)
            normalized = model.normalization.normalize(torch.from_numpy(dense[np.random.default_rng(seed).choice(
                len(dense), model.config.vae.num_points, replace=False)])[None].float()).to(device)
            with torch.no_grad():
                encoding = model.vae.encode(normalized, sample=False)
                decoded = model.normalization.denormalize(model.vae.decode(encoding.shape_latent, encoding.latent_points))
            diagonal = float(np.linalg.norm(dense.max(axis=0) - dense.min(axis=0)))
            for name, net in (("network", network), ("estimated normals", None)):
                mesh = reconstruct(decoded[0].cpu().numpy(), network=net, resolution=128)
                surface = trimesh.sample.sample_surface(mesh, 10000, seed=0)[0]
                errors[name].append(_chamfer_l1(surface, dense) / diagonal)
    return {name: float(np.mean(values)) for name, values in errors.items()}


def inversion_round_trip(model, steps=EVALUATION_STEPS):
    """How well DDIM inversion then sampling gives back the latents of two held-out shapes (what
    interpolation rests on): mean absolute error of z0 and of the latent points, in units of
    the latents' own standard deviation."""
    import torch

    from backend import diffusion
    from backend.data.datasets import ProceduralDataset
    from backend.pipelines import schedule_of

    shapes = ProceduralDataset(["chair", "table"], shapes_per_category=1, first_seed=HELD_OUT_FIRST_SEED,
                               normalization=model.normalization, subsample="first")
    schedule = schedule_of(model)
    sampling_steps = diffusion.sampling_steps(schedule, steps, "uniform")
    with torch.no_grad():
        device = next(model.parameters()).device
        encoding = model.vae.encode(torch.stack([shapes[0], shapes[1]]).to(device), sample=False)
        z, h = encoding.shape_latent, encoding.latent_points
        points_prior = lambda x, t: model.point_prior(x, t, z)  # noqa: E731
        z_back = diffusion.ddim_sample(schedule, model.shape_prior,
                                       diffusion.ddim_invert(schedule, model.shape_prior, z, sampling_steps),
                                       sampling_steps)
        h_back = diffusion.ddim_sample(schedule, points_prior,
                                       diffusion.ddim_invert(schedule, points_prior, h, sampling_steps), sampling_steps)
    return {"shape_latent": float((z_back - z).abs().mean() / z.std()),
            "latent_points": float((h_back - h).abs().mean() / h.std())}


def _chamfer_l1(a, b):
    from scipy.spatial import cKDTree

    return 0.5 * (cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean())


def stage_summary(runs):
    """{stage: {"steps", "seconds", "arguments"}} from each run's log."""
    summary = {}
    for name, arguments, _ in stages(runs):
        run_dir = arguments[arguments.index("--out") + 1]
        with open(os.path.join(run_dir, "log.jsonl")) as f:
            entries = [json.loads(line) for line in f if line.strip()]
        times = [e["time"] for e in entries if "time" in e]
        summary[name] = {"steps": max(e.get("step", 0) for e in entries),
                         "seconds": round(max(times) - min(times)) if times else None,
                         "arguments": " ".join(a if not a.startswith(runs) else os.path.relpath(a, runs)
                                              for a in arguments)}
    return summary


def join_priors_and_voxel_encoder(prior_model, voxel_model, destination):
    """One model: the VAE and voxel encoder of `voxel_model`, the priors of `prior_model` (both
    runs start from the same VAE, which neither changes; checked)."""
    import torch

    from backend.checkpoint import load_checkpoint, save_checkpoint

    priors, voxel = load_checkpoint(prior_model), load_checkpoint(voxel_model)
    if priors.config != voxel.config:
        raise ValueError(f"{prior_model} and {voxel_model} have different configs")
    for name, value in priors.tensors.items():
        if name.startswith("vae.") and not torch.equal(value, voxel.tensors[name]):
            raise ValueError(f"{prior_model} and {voxel_model} hold different VAEs ({name})")
    tensors = dict(voxel.tensors)
    tensors.update({name: value for name, value in priors.tensors.items()
                    if name.startswith(("shape_prior.", "point_prior."))})
    metadata = {**voxel.metadata, "stage": "joined", "step": priors.metadata.get("step"),
                "prior_step": priors.metadata.get("step"),
                "voxel_encoder_step": voxel.metadata.get("step"),
                "trained_parts": ["vae", "shape_prior", "point_prior", "voxel_encoder"]}
    save_checkpoint(destination, tensors, voxel.config, metadata)


def package(runs, models_dir, device):
    """Write the shipped files into `models_dir`; returns the model card's facts."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    from backend.checkpoint import load_model, save_half_precision

    products = {name: product for name, _, product in stages(runs)}
    os.makedirs(models_dir, exist_ok=True)
    final = os.path.join(runs, "joined.safetensors")
    join_priors_and_voxel_encoder(products["prior"], products["voxel_encoder"], final)
    model_path = os.path.join(models_dir, f"{MODEL_NAME}.safetensors")
    save_half_precision(final, model_path)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model, metadata = load_model(model_path, device)
    full, _ = load_model(final, device)
    with_half = max((a - b).abs().max().item() for a, b in zip(model.state_dict().values(), full.state_dict().values())
                    if a.is_floating_point())

    sap_path = os.path.join(models_dir, f"{MODEL_NAME}-sap.safetensors")
    reconstruction = evaluate_reconstruction(model, products["sap"])
    print(f"[recipe] reconstruction Chamfer-L1 / diagonal: {reconstruction}", flush=True)
    # The server uses a shipped network; ship it only where it beats the estimated normals.
    shipped = [model_path]
    if reconstruction["network"] < reconstruction["estimated normals"]:
        shutil.copyfile(products["sap"], sap_path)
        shipped.append(sap_path)
    elif os.path.exists(sap_path):
        os.remove(sap_path)
    round_trip = inversion_round_trip(model)
    print(f"[recipe] DDIM inversion round trip, relative error: {round_trip}", flush=True)
    metrics = evaluate(model, os.path.join(runs, "evaluation"))
    return {
        "date": datetime.date.today().isoformat(),
        "parameters": model.parameter_counts(),
        "metadata": metadata,
        "stages": stage_summary(runs),
        "metrics": metrics,
        "files": {os.path.basename(p): os.path.getsize(p) for p in shipped},
        "reconstruction": reconstruction,
        "inversion_round_trip": round_trip,
        "max_weight_rounding": with_half,
    }


def write_model_card(facts, path):
    metrics = facts["metrics"]
    lines = [
        f"# LION default model ({facts['date']})",
        "",
        "The model the extension ships and the backend loads when no other is chosen: LION's",
        "architecture in the `tiny` configuration (2048 points, z0 of 128 numbers, latent points",
        "with 1 feature), trained by `python3 build.py train-default` (scripts/train_default_model.py)",
        "with the project's own training stages, on the project's own procedural shapes.",
        "",
        "## Data",
        "",
        "The procedural dataset (backend/data/procedural.py): 8 categories (chair, table, airplane,",
        "mug, bottle, lamp, car, sofa), 100 shapes each (seeds 0-99), 2048 surface points per shape",
        "drawn from 10000 per shape, one global normalization. Y is up, as in ShapeNet.",
        "What it knows is these categories only: an artist's mesh of another kind is pulled towards",
        "the nearest of them.",
        "",
        "## Training",
        "",
        "| stage | steps | time | arguments of `python -m backend.train` |",
        "|---|---|---|---|",
    ]
    for name, stage in facts["stages"].items():
        minutes = f"{stage['seconds'] / 60:.0f} min" if stage["seconds"] is not None else "?"
        lines.append(f"| {name} | {stage['steps']} | {minutes} | `{stage['arguments']}` |")
    counts = ", ".join(f"{k} {v:,}" for k, v in facts["parameters"].items())
    lines += [
        "",
        f"Parameters: {counts}. Weights are stored as float16 (largest rounding of a weight:",
        f"{facts['max_weight_rounding']:.1e}) and computed in float32.",
        "Files: " + ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in facts["files"].items()) + ".",
        "",
        "## Generation quality",
        "",
        f"{8 * HELD_OUT_PER_CATEGORY} shapes sampled with DDIM-{EVALUATION_STEPS} against "
        f"{HELD_OUT_PER_CATEGORY} held-out shapes per category (seeds from {HELD_OUT_FIRST_SEED}), "
        "with `python -m backend.evaluate` (Chamfer distance, LION's protocol; 1-NNA: 50% is ideal):",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for key in ("1-NNA-CD", "COV-CD", "MMD-CD"):
        if key in metrics:
            value = metrics[key]
            lines.append(f"| {key} | {value * 100:.1f}% |" if key != "MMD-CD" else f"| {key} | {value:.3e} |")
    reconstruction = facts["reconstruction"]
    shipped_network = f"{MODEL_NAME}-sap.safetensors" in facts["files"]
    lines += [
        "",
        "## Mesh reconstruction",
        "",
        "Shape As Points on the model's own decoded points of 16 held-out shapes (2 per category),",
        "grid 128; Chamfer-L1 between the mesh and the shape's dense points, over the bounding-box",
        "diagonal (lower is better):",
        "",
        "| oriented points from | Chamfer-L1 / diagonal |",
        "|---|---|",
        f"| the trained network | {reconstruction['network']:.4f} |",
        f"| estimated normals (the fallback) | {reconstruction['estimated normals']:.4f} |",
        "",
        (f"The network is better, so it ships as {MODEL_NAME}-sap.safetensors and the server uses it."
         if shipped_network else
         "The network trained here is not better than estimated normals, so it is not shipped and "
         "the server reconstructs with estimated normals."),
    ]
    trip = facts["inversion_round_trip"]
    lines += [
        "", "## Limits", "",
        "This is a small model trained for under two hours on a 2-core CPU, far less than",
        "LION's priors get. What that means for an artist:",
        "",
        "- Generate Variations keeps the source's category for most variations (a test checks",
        "  at least half, chance being 1 in 8), but shapes are blurred point clouds rather than",
        "  crisp parts. Fresh samples (Generate) are blobs: the priors have not learned to make",
        "  shapes from pure noise (the 1-NNA above says as much).",
        f"- Interpolate does not work well yet: DDIM inversion then sampling gives the latent points",
        f"  back with a mean error of {trip['latent_points']:.2f} of their standard deviation (z0: "
        f"{trip['shape_latent']:.2f}),",
        "  so frames need not resemble A and B. A strict-xfail test records the criterion.",
        "- The VAE was trained with a KL weight of 0.01 (LION: 0.5) so that 3000 CPU steps",
        "  reconstruct well; its latent points are then nearly the input points, and the point",
        "  prior must learn fine surface detail itself, which is what it has not yet learned.",
        "",
        "Retrain with more steps on a GPU (`python3 build.py train-default --device cuda`, after",
        "raising the steps in scripts/train_default_model.py) for a better model.",
        "",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=os.path.join(ROOT, "runs", "default"), help="folder of the stages' runs")
    parser.add_argument("--models", default=os.path.join(ROOT, "models"), help="where the shipped files go")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--only", nargs="*", help="train only these stages (then stop, no packaging)")
    args = parser.parse_args()
    runs = os.path.abspath(args.runs)
    train(runs, args.device, args.only)
    if args.only:
        return
    facts = package(runs, os.path.abspath(args.models), args.device)
    with open(os.path.join(runs, "model_card.json"), "w") as f:
        json.dump(facts, f, indent=2, default=str)
    write_model_card(facts, os.path.join(args.models, f"{MODEL_NAME}.md"))
    print(f"[recipe] written: {args.models}/{MODEL_NAME}.safetensors, {MODEL_NAME}-sap.safetensors, {MODEL_NAME}.md")


if __name__ == "__main__":
    main()
