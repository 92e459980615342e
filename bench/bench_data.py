"""Data and metric throughput: procedural shapes, surface sampling, mesh-folder caching,
Chamfer and EMD at LION's 2048 points.

    .venv/bin/python bench/bench_data.py [--quick]
"""
import argparse
import glob
import importlib.util
import itertools
import os
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import print_table, time_call, write_results  # noqa: E402
import torch  # noqa: E402

from backend.data.mesh_folder import MeshFolderShapes  # noqa: E402
from backend.data.procedural import CATEGORIES, generate_shape  # noqa: E402
from backend.data.sampling import sample_surface_points  # noqa: E402
from backend.metrics import chamfer_distance, earth_movers_distance, pairwise_distances  # noqa: E402


def procedural_rows(repeats):
    rows = []
    for category in CATEGORIES:
        seeds = itertools.count()
        seconds = time_call(lambda: generate_shape(category, next(seeds)), repeats=repeats, warmup=1)
        rows.append({"case": f"procedural {category} (resolution 80)", "value": seconds * 1e3, "unit": "ms/shape"})
    shape = generate_shape("chair", 0)
    seconds = time_call(lambda: sample_surface_points(shape.vertices, shape.faces, 15000, seed=1), repeats=repeats)
    rows.append({"case": f"sample 15000 points ({len(shape.faces)} triangles)", "value": seconds * 1e3, "unit": "ms"})
    return rows


def mesh_folder_rows(count):
    spec = importlib.util.find_spec("pybullet_data")
    if spec is None:
        return [{"case": "mesh folder", "value": "skipped: pip install pybullet for its meshes", "unit": ""}]
    meshes = sorted(glob.glob(os.path.join(spec.submodule_search_locations[0], "random_urdfs", "*", "*.obj")))[:count]
    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as cache:
        for path in meshes:
            os.symlink(path, os.path.join(folder, os.path.basename(path)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            MeshFolderShapes(folder, cache)
            first = time.perf_counter() - start
            start = time.perf_counter()
            MeshFolderShapes(folder, cache)
            cached = time.perf_counter() - start
    return [
        {"case": f"mesh folder scan + sample 15000 pts ({len(meshes)} pybullet meshes)", "value": first / len(meshes) * 1e3, "unit": "ms/mesh"},
        {"case": "mesh folder scan, cache hit", "value": cached / len(meshes) * 1e3, "unit": "ms/mesh"},
    ]


def metric_rows(device, quick):
    rows = []
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    batch = 64 if device.type == "cuda" else 8
    x, y = torch.rand(batch, 2048, 3, device=device), torch.rand(batch, 2048, 3, device=device)
    seconds = time_call(lambda: chamfer_distance(x, y), repeats=5, warmup=1, sync=sync)
    rows.append({"case": f"Chamfer 2048 pts, batch {batch}, {device.type}", "value": batch / seconds, "unit": "pairs/s"})
    if device.type == "cpu":  # what 1-NNA, MMD and COV spend their time on, both paths in one run
        clouds = 8 if quick else 16
        a, b = torch.rand(clouds, 2048, 3), torch.rand(clouds, 2048, 3)
        matrix = time_call(lambda: pairwise_distances(a, b, chamfer_distance, pairs_per_batch=4), repeats=1, warmup=0)
        trees = time_call(lambda: pairwise_distances(a, b, chamfer_distance), repeats=1, warmup=0)
        rows.append({"case": f"pairwise Chamfer {clouds}x{clouds}, 2048 pts: matrix form", "value": clouds ** 2 / matrix, "unit": "pairs/s"})
        rows.append({"case": f"pairwise Chamfer {clouds}x{clouds}, 2048 pts: k-d trees", "value": clouds ** 2 / trees, "unit": "pairs/s"})
        rows.append({"case": "pairwise Chamfer: k-d trees / matrix form", "value": matrix / trees, "unit": "x faster"})
    pairs = 2 if quick else 8
    seconds = time_call(lambda: earth_movers_distance(x[:pairs], y[:pairs], "exact"), repeats=1, warmup=0)
    rows.append({"case": f"EMD exact 2048 pts ({pairs} pairs, CPU solver)", "value": seconds / pairs, "unit": "s/pair"})
    if device.type == "cuda" or not quick:
        seconds = time_call(lambda: earth_movers_distance(x[:pairs], y[:pairs], "sinkhorn"), repeats=1, warmup=0, sync=sync)
        rows.append({"case": f"EMD Sinkhorn 2048 pts ({pairs} pairs, {device.type})", "value": seconds / pairs, "unit": "s/pair"})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and meshes")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = procedural_rows(3 if args.quick else 10)
    rows += mesh_folder_rows(20 if args.quick else 200)
    rows += metric_rows(device, args.quick)
    print_table(rows, ["case", "value", "unit"])
    print(f"wrote {write_results('data', rows)}")


if __name__ == "__main__":
    main()
