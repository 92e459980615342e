"""The largest requests the protocol allows, each sent to a fresh backend process: seconds,
the process's peak memory (VmHWM) and its reply.

    .venv/bin/python bench/bench_limits.py [--steps N] [--only NAME ...]

Memory depends on the batch (count, frames) and the geometry, not on the number of steps,
so the cases run few steps (--steps, default 2); their seconds grow with it. Uses the shipped
default model. Linux only (it reads /proc).
"""
import argparse
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from backend import op_schema, protocol  # noqa: E402
from bench.common import print_table, write_results  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def grid_mesh(side):
    """A rippled square of 2·side² triangles."""
    xs = np.linspace(0.0, 1.0, side + 1)
    gx, gy = (a.ravel() for a in np.meshgrid(xs, xs, indexing="ij"))
    vertices = np.stack([gx, gy, 0.2 * np.sin(6.0 * gx)], 1)
    index = np.arange((side + 1) ** 2).reshape(side + 1, side + 1)
    a, b, c, d = (i.ravel() for i in (index[:-1, :-1], index[1:, :-1], index[1:, 1:], index[:-1, 1:]))
    return vertices, np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)]).astype(np.int32)


def solid_guide(resolution):
    """Every voxel of a resolution³ block: the finest, fullest guide the add-on makes."""
    cells = np.stack(np.meshgrid(*[np.arange(resolution)] * 3, indexing="ij"), -1).reshape(-1, 3)
    return (cells + 0.5) / resolution


def cases(steps):
    count_max = op_schema.field("sample", "count").maximum
    frames_max = op_schema.field("interpolate", "frames").maximum
    mesh_max = op_schema.field("reconstruct", "resolution").maximum
    guide = op_schema.GUIDE_RESOLUTION.maximum
    big_vertices, big_faces = grid_mesh(1600)  # 5.1 million triangles
    over_vertices, over_faces = grid_mesh(2300)  # 10.6 million: over the budget
    small_vertices, small_faces = grid_mesh(20)
    points = np.random.default_rng(0).normal(size=(5_000_000, 3))
    return [
        ("sample, count max", {"op": "sample", "count": count_max, "steps": steps}, {}),
        ("variations of a 5.1M-triangle mesh, count 4", {"op": "variations", "count": 4, "steps": steps},
         {"vertices": big_vertices, "faces": big_faces}),
        ("variations, count max", {"op": "variations", "count": count_max, "steps": steps},
         {"vertices": small_vertices, "faces": small_faces}),
        ("variations as meshes, count 4, grid max", {"op": "variations", "count": 4, "steps": steps,
                                                      "output": "mesh", "resolution": mesh_max},
         {"vertices": small_vertices, "faces": small_faces}),
        ("interpolate, frames max", {"op": "interpolate", "frames": frames_max, "steps": steps},
         {"vertices_a": small_vertices, "faces_a": small_faces, "vertices_b": small_vertices * [1, 2, 1],
          "faces_b": small_faces}),
        (f"voxel_guided, a solid {guide}³ guide, count 4",
         {"op": "voxel_guided", "count": 4, "steps": steps, "voxel_size": 1.0 / guide},
         {"voxel_centers": solid_guide(guide)}),
        ("reconstruct 5M points, grid max", {"op": "reconstruct", "resolution": mesh_max}, {"points": points}),
        ("variations of a 10.6M-triangle mesh (over budget)", {"op": "variations", "count": 1, "steps": steps},
         {"vertices": over_vertices, "faces": over_faces}),
    ]


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_case(header, arrays):
    """(seconds, peak MB of the backend, reply summary) of one request to a fresh backend."""
    process = subprocess.Popen([sys.executable, "-m", "backend.serve"], cwd=ROOT,
                               env=dict(os.environ, PYTHONPATH=ROOT), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        protocol.write_frame(process.stdin, {"id": 0, "op": "hello"})
        protocol.read_frame(process.stdout)
        start = time.perf_counter()
        writer = threading.Thread(target=protocol.write_frame, args=(process.stdin, {"id": 1, **header}, arrays))
        writer.start()  # a big frame: read replies while it is written
        while True:
            reply, _ = protocol.read_frame(process.stdout)
            if reply.get("type") != "progress":
                break
        seconds = time.perf_counter() - start
        writer.join()
        peak = peak_rss_mb(process.pid)
        if reply["type"] == "result":
            summary = "result"
        else:
            summary = f"{reply['type']} {reply.get('code', '')}: {reply.get('message', '')[:70]}"
        return seconds, peak, summary
    finally:
        process.kill()
        process.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="run the cases whose name contains one of these")
    args = parser.parse_args()
    rows = []
    for name, header, arrays in cases(args.steps):
        if args.only and not any(word in name for word in args.only):
            continue
        seconds, peak, reply = run_case(header, arrays)
        payload = sum(a.nbytes for a in arrays.values()) / 1e6
        rows.append({"case": name, "input MB": round(payload, 1), "seconds": round(seconds, 2),
                     "peak RSS MB": round(peak), "reply": reply})
        print(f"{name}: {seconds:.1f} s, {peak:.0f} MB, {reply}", file=sys.stderr, flush=True)
    print_table(rows, ["case", "input MB", "seconds", "peak RSS MB", "reply"])
    print("written:", write_results("limits", rows, {"steps": args.steps}))


if __name__ == "__main__":
    main()
