"""Short prior ablations: train the priors of one VAE several ways on the same data for the same
steps, then measure each against held-out procedural shapes. In the backend environment:

    python scripts/ablate_priors.py --vae runs/vae/model.safetensors --categories chair --steps 400 \
        --out runs/ablation --variant "eps=--prediction eps" --variant "v=--prediction v" \
        --variant "mixed=--prediction mixed --mixing-logit-init -3 --mixing-logit-lr-scale 30"

Each variant is NAME=ARGUMENTS, the extra arguments of `python -m backend.train prior`. The
table compares 1-NNA-CD (50% ideal) with the real-against-real 1-NNA of the same set size, and
the samples' half extent with the data's (a sampler that explodes shows here first).
--baseline NAME=PATH measures a trained model as it is beside them (the model the variants
continue, say). Results go to OUT/ablation.json; each variant's run folder holds its sample renders.
"""
import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

ENCODINGS_FILE = "encodings.pt"  # backend.train.prior's cache of the VAE's encodings


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vae", required=True, help="model.safetensors of a trained VAE")
    parser.add_argument("--categories", default="chair", help="procedural categories, comma-separated")
    parser.add_argument("--shapes-per-category", type=int, default=100)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--eval-count", type=int, default=32, help="samples (and held-out shapes) per category")
    parser.add_argument("--variant", action="append", required=True, help="NAME=extra prior-stage arguments")
    parser.add_argument("--baseline", action="append", default=[],
                        help="NAME=PATH of a trained model to measure beside the variants, untrained further")
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="auto")
    return parser.parse_args(argv)


def train_variant(args, name, extra):
    run_dir = os.path.join(args.out, name)
    if os.path.isfile(os.path.join(run_dir, "model.safetensors")):
        return run_dir, None
    # Every variant trains on the same VAE, data, draws and seed, so on the same encodings:
    # made by the first variant, shared with the others (encoding is minutes on a CPU).
    shared = os.path.join(args.out, ENCODINGS_FILE)
    if os.path.isfile(shared) and not os.path.exists(os.path.join(run_dir, ENCODINGS_FILE)):
        os.makedirs(run_dir, exist_ok=True)
        shutil.copyfile(shared, os.path.join(run_dir, ENCODINGS_FILE))
    command = [sys.executable, "-m", "backend.train", "prior", "--vae", args.vae,
               "--data", f"procedural:{args.categories}", "--shapes-per-category", str(args.shapes_per_category),
               "--out", run_dir, "--steps", str(args.steps), "--batch-size", str(args.batch_size),
               "--checkpoint-every", str(args.steps), "--device", args.device, *shlex.split(extra)]
    print("[ablation]", " ".join(command), flush=True)
    started = time.time()
    subprocess.run(command, cwd=ROOT, check=True)
    if not os.path.isfile(shared):
        shutil.copyfile(os.path.join(run_dir, ENCODINGS_FILE), shared)
    return run_dir, time.time() - started


def measure(model_path, categories, count, cache):
    import torch

    from backend import quality
    from backend.checkpoint import load_model
    from backend.pipelines import SamplerSettings, sample

    model, _ = load_model(model_path)
    if "reference" not in cache:  # every variant shares the VAE, so its data normalization
        cache["reference"] = quality.held_out_shapes(model, categories, count)
        cache["baseline"] = quality.training_shapes(model, categories, count)[0]
    (reference, labels), baseline = cache["reference"], cache["baseline"]
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        generated = torch.cat([sample(model, count, generator, SamplerSettings(steps=25),
                                      category=name if model.categories else None) for name in categories])
    report = quality.generation_report(generated, reference, labels, baseline)
    report["noise_error_by_step"] = quality.noise_error_by_step(model, reference)
    report["point_prior_chamfer"] = quality.point_prior_chamfer(model, reference)
    return report


def main(argv=None):
    args = parse_arguments(argv)
    os.makedirs(args.out, exist_ok=True)
    categories = args.categories.split(",")
    results_path = os.path.join(args.out, "ablation.json")
    results = json.load(open(results_path))["results"] if os.path.isfile(results_path) else {}
    cache = {}

    def save():
        with open(results_path, "w") as f:
            json.dump({"vae": args.vae, "categories": categories, "steps": args.steps, "results": results}, f, indent=2)

    for baseline in args.baseline:
        name, _, model_path = baseline.partition("=")
        if name not in results:  # not measured by an earlier call
            results[name] = {"arguments": f"(as trained: {os.path.relpath(model_path, ROOT)})", "train_seconds": 0,
                             **measure(os.path.abspath(model_path), categories, args.eval_count, cache)}
            save()
    for variant in args.variant:
        name, _, extra = variant.partition("=")
        if name in results:
            continue
        run_dir, seconds = train_variant(args, name, extra)
        results[name] = {"arguments": extra, "train_seconds": seconds, **measure(os.path.join(run_dir, "model.safetensors"), categories, args.eval_count, cache)}
        save()
    print(f"\n{'variant':<14} {'1-NNA-CD':>9} {'real-real':>9} {'COV-CD':>7} {'half extent':>12} {'data':>6}"
          f" {'h0 prior CD':>11}  noise error at steps")
    for name, r in results.items():
        errors = " ".join(f"{t}:{e:.2f}" for t, e in r.get("noise_error_by_step", {}).items())
        print(f"{name:<14} {r['1-NNA-CD']:>9.3f} {r['real_vs_real_1-NNA-CD']:>9.3f} {r['COV-CD']:>7.3f} "
              f"{r['half_extent']:>12.3f} {r['reference_half_extent']:>6.3f} {r.get('point_prior_chamfer', float('nan')):>11.4f}  {errors}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
