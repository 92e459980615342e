"""Milliseconds per call of every point-voxel operator at LION sizes, reference against compiled,
and what that does to whole-model work, all in one run.

    .venv/bin/python bench/bench_kernels.py [--quick] [--batch B] [--no-models] [--threads N]

Operator rows: the PyTorch reference and the compiled operators on the CPU, with the speed-up,
and for the operators bound by memory the one pass over it that no implementation avoids, with
the speed-up over the reference that doing only that pass would give (the most any can);
on a machine with CUDA the same pair on the GPU. Sizes follow LION's PVCNN U-Nets: N = 2048
points, C = 64 channels, grid r = 32, the first set-abstraction stage (M = 1024 centers,
radius 0.1, K = 32) and the last feature-propagation step (1024 -> 2048).
Model rows (the shipped default model, on the CPU): one h0-prior and one VAE training step
(forward + backward at the recipe's batch of 8; the optimizer's step costs the same on both
paths) and 4 variations through the server's ops, as the add-on asks for them.
Writes bench/results/kernels.json.
"""
import argparse
import contextlib
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import print_table, time_call, write_results  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from kernels import ops  # noqa: E402

POINTS, CHANNELS, RESOLUTION, CENTERS, RADIUS, NEIGHBOURS = 2048, 64, 32, 1024, 0.1, 32
TRAIN_BATCH = 8


@contextlib.contextmanager
def path(name):
    """Make `kernels.ops` run the reference ("reference") or the compiled operators ("compiled")."""
    original = ops.compiled_for
    if name == "reference":
        ops.compiled_for = lambda tensor: None
    try:
        yield
    finally:
        ops.compiled_for = original


def on_both_paths(call, repeats, sync=None):
    """ms per call on the reference and on the compiled operators, measured back to back."""
    times = {}
    for label in ("reference", "compiled"):
        with path(label):
            times[f"{label}_ms"] = time_call(call, repeats=repeats, warmup=1, sync=sync) * 1e3
    return {**times, "speedup": times["reference_ms"] / times["compiled_ms"]}


def _inputs(batch, device):
    g = torch.Generator(device=device).manual_seed(0)
    coords = torch.rand(batch, 3, POINTS, generator=g, device=device) * 2 - 1
    vox = ops.voxel_coords(coords, RESOLUTION)
    centers = coords[:, :, :CENTERS].contiguous()
    return {
        "coords": coords,
        "vox": vox,
        "vox_int": torch.round(vox).int(),
        "feat": torch.randn(batch, CHANNELS, POINTS, generator=g, device=device, requires_grad=True),
        "grid": torch.randn(batch, CHANNELS, RESOLUTION, RESOLUTION, RESOLUTION, generator=g, device=device,
                            requires_grad=True),
        "centers": centers,
        "cfeat": torch.randn(batch, CHANNELS, CENTERS, generator=g, device=device, requires_grad=True),
        "idx": torch.randint(0, POINTS, (batch, CENTERS, NEIGHBOURS), generator=g, device=device),
    }


def _memory_floors(x):
    """{op name: a call that moves the memory the op must move, and nothing more}. Voxelizing
    writes a fresh [B, C, r³] grid (134 MB at B = 16); devoxelizing 32k points reads nearly
    every voxel of one. No implementation of these ops can beat these passes."""
    grid = x["grid"].detach()
    return {
        "avg_voxelize r=32": lambda: torch.zeros_like(grid),
        "trilinear_devoxelize r=32": lambda: grid.sum(),
    }


def _cases(x):
    """(op name, forward callable through kernels.ops, differentiable input or None)."""
    return [
        ("avg_voxelize r=32", lambda: ops.avg_voxelize(x["feat"], x["vox_int"], RESOLUTION), "feat"),
        ("trilinear_devoxelize r=32", lambda: ops.trilinear_devoxelize(x["grid"], x["vox"]), "grid"),
        ("furthest_point_sample M=1024", lambda: ops.furthest_point_sample(x["coords"], CENTERS), None),
        ("ball_query M=1024 K=32", lambda: ops.ball_query(x["centers"], x["coords"], RADIUS, NEIGHBOURS), None),
        ("grouping M=1024 K=32", lambda: ops.grouping(x["feat"], x["idx"]), "feat"),
        ("three_nn_interpolate 1024->2048", lambda: ops.three_nn_interpolate(x["coords"], x["centers"], x["cfeat"]),
         "cfeat"),
    ]


def operator_rows(device, batch, repeats):
    sync = torch.cuda.synchronize if device == "cuda" else None
    x = _inputs(batch, device)
    floors = _memory_floors(x)
    rows = []
    for name, forward, differentiable in _cases(x):
        def forward_only():
            with torch.no_grad():
                forward()

        def forward_backward():
            out = forward()
            out.backward(torch.ones_like(out))
            x[differentiable].grad = None

        for mode, call in [("forward", forward_only)] + ([("forward+backward", forward_backward)]
                                                         if differentiable else []):
            row = {"what": name, "mode": mode, "device": device, "batch": batch, **on_both_paths(call, repeats, sync)}
            if mode == "forward" and name in floors:
                with torch.no_grad():
                    row["memory_floor_ms"] = time_call(floors[name], repeats=repeats, warmup=1, sync=sync) * 1e3
                    # What an implementation that did nothing but that pass would gain.
                    row["speedup_at_floor"] = row["reference_ms"] / row["memory_floor_ms"]
            rows.append(row)
    return rows


def model_rows(repeats):
    """Whole-model work on the CPU with the shipped default model, on both paths."""
    from backend.checkpoint import load_model

    model, _ = load_model(os.path.join(ROOT, "models", "default.safetensors"))
    model.train()
    config = model.config
    g = torch.Generator().manual_seed(0)
    n, dz, dh = config.vae.num_points, config.vae.shape_latent_dim, config.latent_point_dim
    points = torch.rand(TRAIN_BATCH, n, 3, generator=g) * 1.6 - 0.8
    z = torch.randn(TRAIN_BATCH, dz, generator=g)
    h = torch.cat([points, torch.randn(TRAIN_BATCH, n, dh - 3, generator=g)], dim=-1)
    t = torch.randint(1, config.diffusion.num_steps, (TRAIN_BATCH,), generator=g)

    def point_prior_step():
        model.point_prior(h, t, z).square().mean().backward()

    def vae_step():
        reconstruction, encoding = model.vae(points)
        ((reconstruction - points).abs().sum() + encoding.latent_points_log_sigma.sum()).backward()

    variations = _variations_call()
    cases = [(f"h0 prior train step (B={TRAIN_BATCH})", point_prior_step),
             (f"VAE train step (B={TRAIN_BATCH})", vae_step),
             ("4 variations, default model, DDIM 25", variations)]
    rows = []
    for name, call in cases:
        rows.append({"what": name, "mode": "model", "device": "cpu", "batch": TRAIN_BATCH if "train" in name else 4,
                     **on_both_paths(call, repeats)})
        model.zero_grad(set_to_none=True)
    return rows


def _variations_call():
    """4 variations of a chair-sized box as the add-on asks for them (its default similarity)."""
    import trimesh

    os.environ["LION_MODEL_DIRS"] = os.path.join(ROOT, "models")
    from backend.serve import ops
    from backend.serve.session import Session

    class Quiet:
        def check_cancelled(self):
            pass

        def progress(self, step, total, stage):
            pass

    box = trimesh.creation.box(extents=(0.5, 1.0, 0.5)).subdivide().subdivide()
    mesh = {"vertices": box.vertices.astype(np.float32), "faces": box.faces.astype(np.int32)}
    session = Session()
    ops.run(session, "load_model", {}, {}, Quiet())
    return lambda: ops.run(session, "variations", {"count": 4, "tau": 300, "steps": 25, "seed": 0}, mesh, Quiet())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small batch, few repeats")
    parser.add_argument("--batch", type=int, default=None, help="shapes per operator call (default 16, quick 2)")
    parser.add_argument("--no-models", action="store_true", help="operator rows only")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    batch = args.batch or (2 if args.quick else 16)
    repeats = 2 if args.quick else 5

    info = ops.implementation_info(load=True)
    if info["cpu"] != "compiled":
        sys.exit(f"the compiled CPU operators are not available: {info['cpu_reason']}")
    rows = operator_rows("cpu", batch, repeats)
    if torch.cuda.is_available() and info["cuda"] == "compiled":
        rows += operator_rows("cuda", batch, repeats)
    if not args.no_models:
        rows += model_rows(1 if args.quick else 3)
    print_table(rows, ["what", "mode", "device", "batch", "reference_ms", "compiled_ms", "speedup", "memory_floor_ms",
                       "speedup_at_floor"])
    print(f"kernels: {info['active']} ({info['reason']})")
    result = write_results("kernels", rows, extra={"implementation": info, "quick": args.quick,
                                                   "torch_threads": torch.get_num_threads()})
    print(f"wrote {result}")


if __name__ == "__main__":
    main()
