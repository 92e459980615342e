"""What the generation commands share: reading shapes, the common options, running an op of
the server in-process (the same ops, the same checks), and writing the results."""
import os
import sys

import numpy as np

from backend import op_schema

POINT_OUTPUTS = (".npy", ".ply", ".obj", ".off", ".stl", ".glb")


def add_field_option(parser, op, name, flag=None, help=None):
    """An option for the field `name` of `op`, from backend/op_schema.py: its type, choices,
    default and limits, so that the command line offers exactly what the backend accepts."""
    spec = op_schema.field(op, name)
    text = help or spec.doc
    kwargs = {"type": {"int": int, "number": float}.get(spec.kind, str)}
    if spec.kind == "choice":
        kwargs["choices"] = spec.choices
    elif spec.kind in ("int", "number"):
        text += f"; {spec.bounds()}"
    if spec.default is not None:
        text += f" (default {spec.default})"
    # Defaults are left to the backend (None is not sent), so that exclusive fields such as
    # --tau and --similarity can each be left out.
    parser.add_argument(flag or "--" + name.replace("_", "-"), dest=name, default=None, help=text, **kwargs)


def add_common_arguments(parser, op):
    fields = op_schema.OPS[op]
    if "count" in fields:
        add_field_option(parser, op, "count")
    parser.add_argument("-o", "--out", required=True,
                        help="results: a .npy file [K, N, 3], or NAME.ply/.obj/... written as NAME_0.ply, NAME_1.ply, ...")
    add_field_option(parser, op, "model")
    parser.add_argument("--model-dir", default=None, help="folder with models (.safetensors), searched first")
    for name in ("seed", "sampler", "steps", "eta", "output"):
        add_field_option(parser, op, name)
    add_field_option(parser, op, "resolution", "--mesh-resolution", help="with --output mesh: the Poisson grid")
    add_field_option(parser, op, "smoothing", "--mesh-smoothing", help="with --output mesh: " + op_schema.field(op, "smoothing").doc)
    add_field_option(parser, op, "normals", help="with --output mesh: " + op_schema.field(op, "normals").doc)
    parser.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), default="auto")


def add_start_arguments(parser, op, closeness):
    """The options of an op that starts from a shape partway along the noise: --similarity or
    --tau (`closeness` says what a small tau keeps close to), and --category."""
    add_field_option(parser, op, "similarity")
    add_field_option(parser, op, "category")
    add_field_option(parser, op, "tau", help=f"the diffusion step to start from, instead of --similarity: small {closeness}")


def field_params(args, op):
    """The request fields of `op` the command line gave (None: left to the backend's default)."""
    return {name: getattr(args, name) for name in op_schema.OPS[op] if getattr(args, name, None) is not None}


def read_shape(path):
    """(vertices float64 [V, 3], faces int32 [F, 3] or None) from a mesh or point file, as the
    file has them: float64, so that a shape far from the origin keeps its detail, and not
    cleaned up by trimesh, so that the backend sees (and refuses, by name) NaN vertices instead
    of faces silently dropped."""
    import trimesh

    if not os.path.isfile(path):
        raise ValueError(f"input file not found: {path}")
    if path.lower().endswith(".npy"):
        return np.load(path, allow_pickle=False).astype(np.float64), None
    geometry = trimesh.load(path, process=False)
    if isinstance(geometry, trimesh.Scene):
        if not geometry.geometry:
            raise ValueError(f"{path} holds no geometry")
        geometry = geometry.to_geometry()
    faces = getattr(geometry, "faces", None)
    faces = np.asarray(faces, np.int32) if faces is not None and len(faces) else None
    return np.asarray(geometry.vertices, np.float64), faces


class _Progress:
    """The ops' job context for a terminal: a progress bar per stage."""

    def __init__(self):
        from tqdm import tqdm

        self._tqdm, self._bar, self._stage = tqdm, None, None

    def check_cancelled(self):
        pass

    def progress(self, step, total, stage):
        if stage != self._stage:
            self.close()
            self._bar, self._stage = self._tqdm(total=total, desc=stage, unit="step", file=sys.stderr), stage
        self._bar.n = step
        self._bar.refresh()

    def close(self):
        if self._bar is not None:
            self._bar.close()


def run_op(op, params, arrays, args):
    """Run a server op in this process and write its results; returns the exit code."""
    if os.path.splitext(args.out)[1].lower() not in POINT_OUTPUTS:
        print(f"error: --out must end in one of {', '.join(POINT_OUTPUTS)}", file=sys.stderr)
        return 2
    if args.model_dir:
        os.environ["LION_MODEL_DIRS"] = os.pathsep.join(filter(None, [args.model_dir, os.environ.get("LION_MODEL_DIRS")]))
    os.environ["LION_DEVICE"] = args.device
    from backend.serve import ops
    from backend.serve.job import RequestError
    from backend.serve.session import Session

    progress = _Progress()
    try:
        header, results = ops.run(Session(), op, {k: v for k, v in params.items() if v is not None}, arrays, progress)
    except RequestError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        progress.close()
    for path in write_results(args.out, results):
        print(f"wrote {path}", file=sys.stderr)
    return 0


def write_results(out, results):
    """Write points (and meshes) to `out`; return the paths written."""
    import trimesh

    points = results["points"]
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    stem, extension = os.path.splitext(out)
    if extension.lower() == ".npy":
        np.save(out, points)
        written = [out]
    else:
        written = []
        for k, shape in enumerate(points):
            path = f"{stem}_{k}{extension}"
            trimesh.PointCloud(shape).export(path)
            written.append(path)
    for k in range(len(points)):
        if f"mesh_vertices_{k}" in results:
            path = f"{stem}_{k}_mesh{extension if extension.lower() != '.npy' else '.ply'}"
            trimesh.Trimesh(results[f"mesh_vertices_{k}"], results[f"mesh_faces_{k}"], process=False).export(path)
            written.append(path)
    return written


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    return 2
