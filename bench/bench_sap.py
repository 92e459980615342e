"""Shape As Points reconstruction speed: seconds for 2048 points at grid 128 and 256.

Rows per device (CPU, and CUDA when present) and path: the fallback (estimated normals) and the
network (default size, untrained: the speed does not depend on the weights), with the stages
timed alone: normals, network, Poisson solve, the level that follows the points, marching cubes.
The network path's total includes the estimated normals' mesh it is compared with, as on the server. The input is 2048 points sampled
from pymeshlab's bunny when pymeshlab is installed, else from a torus.
Run from the repository root: .venv/bin/python bench/bench_sap.py [--quick]
"""
import argparse
import importlib.util
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import print_table, time_call, write_results  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import trimesh  # noqa: E402
from backend.sap.frame import UnitCubeFrame  # noqa: E402
from backend.sap.level import local_level  # noqa: E402
from backend.sap.mesh import indicator_to_mesh  # noqa: E402
from backend.sap.network import PointsToOrientedPoints, parameter_count  # noqa: E402
from backend.sap.normals import estimate_oriented_normals  # noqa: E402
from backend.sap.poisson import solve_indicator  # noqa: E402
from backend.sap.reconstruct import reconstruct  # noqa: E402

POINTS = 2048


def input_points():
    spec = importlib.util.find_spec("pymeshlab")
    if spec is not None and spec.submodule_search_locations:
        path = os.path.join(spec.submodule_search_locations[0], "tests", "sample_meshes", "bunny.obj")
        if os.path.isfile(path):
            return "pymeshlab bunny", trimesh.sample.sample_surface(trimesh.load(path, force="mesh"), POINTS, seed=0)[0]
    torus = trimesh.creation.torus(major_radius=1.0, minor_radius=0.35)
    return "torus", trimesh.sample.sample_surface(torus, POINTS, seed=0)[0]


def stage_times(points, network, resolution, device, timer):
    """Seconds of each stage alone for one path on one device (dict)."""
    frame = UnitCubeFrame.fit(points)
    unit_points = frame.to_unit(points)
    times = {}
    with torch.no_grad():
        if network is None:
            times["normals_s"] = timer(lambda: estimate_oriented_normals(unit_points))
            oriented = torch.from_numpy(unit_points).float()[None].to(device)
            normals = torch.from_numpy(estimate_oriented_normals(unit_points)).float()[None].to(device)
        else:
            network_input = torch.from_numpy(unit_points).float()[None].to(device)
            times["network_s"] = timer(lambda: network(network_input))
            oriented, normals = network(network_input)
        times["solve_s"] = timer(lambda: solve_indicator(oriented, normals, resolution))
        indicator = solve_indicator(oriented, normals, resolution)
        level_points = torch.from_numpy(unit_points).float()[None].to(device)
        times["level_s"] = timer(lambda: local_level(indicator, level_points))
        grid = indicator[0].cpu().numpy() - local_level(indicator, level_points)
    times["mesh_s"] = timer(lambda: indicator_to_mesh(grid, frame))
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    repeats, warmup = (3, 1) if args.quick else (10, 2)
    source, points = input_points()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        sync = torch.cuda.synchronize if device == "cuda" else None

        def timer(fn):
            return time_call(fn, repeats=repeats, warmup=warmup, sync=sync)

        torch.manual_seed(0)
        network = PointsToOrientedPoints().to(device).eval()
        for path, path_network in (("estimated normals", None), ("network", network)):
            for resolution in (128, 256):
                total = timer(lambda: reconstruct(points, path_network, resolution, device=device))
                row = {"device": device, "path": path, "points": POINTS, "resolution": resolution, "total_s": total}
                row.update(stage_times(points, path_network, resolution, device, timer))
                rows.append(row)
    columns = ["device", "path", "points", "resolution", "total_s", "normals_s", "network_s", "solve_s", "level_s",
               "mesh_s"]
    print(f"input: {POINTS} points from the {source}; torch threads {torch.get_num_threads()}")
    print_table(rows, columns)
    extra = {"input": source, "network_parameters": parameter_count(PointsToOrientedPoints())}
    print("wrote", write_results("sap", rows, extra))


if __name__ == "__main__":
    main()
