"""Benchmark LION's networks: ms per denoising step of each prior, per decode and per encode,
DDIM-25 seconds per shape (z0 prior, then h0 prior, then decode), and one training step
(forward + backward) of each stage, for `tiny` and `paper`.

Run from the repository root: `.venv/bin/python bench/bench_models.py [--quick] [--device cuda]
[--configs tiny paper] [--batch 4]`. Prints a table and writes bench/results/models.json.
Weights are random: speed does not depend on them.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import print_table, time_call, write_results  # noqa: E402
import torch  # noqa: E402

from backend import diffusion  # noqa: E402
from backend.config import get_config  # noqa: E402
from backend.models import LionModel  # noqa: E402


def ddim_sample_shapes(model, schedule, batch, steps, device, generator):
    """One full DDIM sample of `batch` shapes: z0, then h0 given z0, then decode -> [B, N, 3]."""
    config = model.config
    plan = diffusion.sampling_steps(schedule, steps)
    z0 = diffusion.ddim_sample(schedule, model.shape_prior,
                               torch.randn(batch, config.vae.shape_latent_dim, generator=generator).to(device), plan)
    h_shape = (batch, config.vae.num_points, config.latent_point_dim)
    h0 = diffusion.ddim_sample(schedule, lambda x, index: model.point_prior(x, index, z0),
                               torch.randn(h_shape, generator=generator).to(device), plan)
    return model.vae.decode(z0, h0)


def bench_config(name, batch, repeats, device, ddim_steps):
    torch.manual_seed(0)
    config = get_config(name)
    model = LionModel(config).to(device).eval()
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    n, dz, dh = config.vae.num_points, config.vae.shape_latent_dim, config.latent_point_dim
    points = (torch.rand(batch, n, 3, device=device) * 1.6 - 0.8)
    z = torch.randn(batch, dz, device=device)
    h = torch.cat([points, torch.randn(batch, n, dh - 3, device=device)], dim=-1)
    t = torch.full((batch,), 500, device=device)
    rows = []
    with torch.no_grad():
        for component, call in (
            ("z0 prior step", lambda: model.shape_prior(z, t)),
            ("h0 prior step", lambda: model.point_prior(h, t, z)),
            ("decode", lambda: model.vae.decode(z, h)),
            ("encode", lambda: model.vae.encode(points)),
        ):
            seconds = time_call(call, repeats=repeats, warmup=1, sync=sync)
            rows.append({"config": name, "what": component, "batch": batch, "ms": seconds * 1e3,
                         "ms_per_shape": seconds * 1e3 / batch})
    rows += bench_training(model, name, points, z, h, t, repeats, sync)
    with torch.no_grad():
        schedule = diffusion.DiffusionSchedule(config.diffusion.num_steps, config.diffusion.beta_start,
                                               config.diffusion.beta_end)
        generator = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        ddim_sample_shapes(model, schedule, batch, ddim_steps, device, generator)
        if sync:
            sync()
        seconds = time.perf_counter() - start
        rows.append({"config": name, "what": f"DDIM-{ddim_steps} sample (z0+h0+decode)", "batch": batch,
                     "ms": seconds * 1e3, "ms_per_shape": seconds * 1e3 / batch})
    return rows


def bench_training(model, name, points, z, h, t, repeats, sync):
    """Seconds of forward + backward of each training stage's loss (no optimizer step)."""
    model.train()

    def vae_step():
        reconstruction, encoding = model.vae(points)
        loss = (reconstruction - points).abs().sum() + encoding.latent_points_log_sigma.sum()
        loss.backward()

    def shape_prior_step():
        model.shape_prior(z, t).square().mean().backward()

    def point_prior_step():
        model.point_prior(h, t, z).square().mean().backward()

    rows = []
    for component, call in (("VAE train step", vae_step), ("z0 prior train step", shape_prior_step),
                            ("h0 prior train step", point_prior_step)):
        seconds = time_call(call, repeats=repeats, warmup=1, sync=sync)
        rows.append({"config": name, "what": component, "batch": z.shape[0], "ms": seconds * 1e3,
                     "ms_per_shape": seconds * 1e3 / z.shape[0]})
    model.zero_grad(set_to_none=True)
    model.eval()
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (and only tiny unless --configs)")
    parser.add_argument("--configs", nargs="+", default=None, choices=["tiny", "paper"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--ddim-steps", type=int, default=25)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = args.configs or (["tiny"] if args.quick else ["tiny", "paper"])
    repeats = 2 if args.quick else 5
    device = torch.device(args.device)
    rows = []
    for name in configs:
        rows += bench_config(name, args.batch, repeats, device, args.ddim_steps)
    print_table(rows, ["config", "what", "batch", "ms", "ms_per_shape"])
    path = write_results("models", rows, extra={"device": str(device), "quick": args.quick})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
