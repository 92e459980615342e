"""The artist's actions through the server's ops, on this machine's CPU (or GPU):
seconds per request, surface sampling and framing included.

    .venv/bin/python bench/bench_pipelines.py [--quick] [--config tiny] [--threads N]

An untrained model of the chosen config costs exactly what a trained one does.
"""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from bench.common import print_table, time_call, write_results  # noqa: E402
import torch  # noqa: E402
import trimesh  # noqa: E402



class _Quiet:
    def check_cancelled(self):
        pass

    def progress(self, step, total, stage):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one repeat per row")
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from backend.checkpoint import save_model
    from backend.config import get_config
    from backend.data.normalization import ShapeBoxNormalization
    from backend.models import LionModel

    folder = tempfile.mkdtemp(prefix="lion-bench-models-")
    save_model(os.path.join(folder, "bench.safetensors"), LionModel(get_config(args.config), ShapeBoxNormalization()))
    os.environ["LION_MODEL_DIRS"] = folder
    from backend.serve import ops
    from backend.serve.session import Session

    chair = trimesh.creation.box(extents=(0.5, 1.0, 0.5)).subdivide().subdivide()
    mesh = {"vertices": chair.vertices.astype(np.float32), "faces": chair.faces.astype(np.int32)}
    two = {"vertices_a": mesh["vertices"], "faces_a": mesh["faces"], "vertices_b": mesh["vertices"] * 1.5,
           "faces_b": mesh["faces"]}
    rng = np.random.default_rng(0)
    cloud = rng.standard_normal((2048, 3)).astype(np.float32)
    cases = [
        ("variations x4, DDIM 25", "variations", {"count": 4, "tau": 200, "steps": 25}, mesh),
        ("sample x4, DDIM 25", "sample", {"count": 4, "steps": 25}, {}),
        ("interpolate 8 frames, DDIM 25", "interpolate", {"frames": 8, "steps": 25}, two),
        ("reconstruct 2048 points, grid 128", "reconstruct", {"resolution": 128}, {"points": cloud}),
    ]
    repeats = 1 if args.quick else 3
    session = Session()
    ops.run(session, "load_model", {}, {}, _Quiet())  # load once, outside the timings
    rows = []
    for label, op, params, arrays in cases:
        seconds = time_call(lambda: ops.run(session, op, params, arrays, _Quiet()), repeats=repeats, warmup=1)
        rows.append({"action": label, "config": args.config, "device": str(session.device),
                     "threads": torch.get_num_threads(), "seconds": seconds})
    print_table(rows, ["action", "config", "device", "threads", "seconds"])
    print(f"results: {write_results('pipelines', rows)}")


if __name__ == "__main__":
    main()
