"""Generate shapes that follow a blocky voxel guide (a mesh, voxelized here, or a voxel file)."""
import numpy as np

from backend import op_schema
from backend.cli import _generation


def add_arguments(parser):
    parser.add_argument("input", help="the guide: a mesh to voxelize, or .npz with 'centers' [V, 3] and 'voxel_size'")
    _generation.add_common_arguments(parser, "voxel_guided")
    guide = op_schema.GUIDE_RESOLUTION
    parser.add_argument("--resolution", dest="guide_resolution", type=int, default=guide.default,
                        help=f"when voxelizing a mesh: {guide.doc}; {guide.bounds()} (default {guide.default})")
    _generation.add_start_arguments(parser, "voxel_guided", "follows the guide closely")


def run(args):
    from backend.voxels import voxelize

    try:
        if args.input.lower().endswith(".npz"):
            with np.load(args.input, allow_pickle=False) as guide_file:
                centers, voxel_size = guide_file["centers"], float(guide_file["voxel_size"])
        else:
            vertices, faces = _generation.read_shape(args.input)
            guide = voxelize(vertices if faces is None else (vertices, faces), args.guide_resolution, filled=True)
            centers, voxel_size = guide.centers, guide.voxel_size
    except (OSError, KeyError, ValueError) as error:
        return _generation.fail(error)
    params = {**_generation.field_params(args, "voxel_guided"), "voxel_size": voxel_size}
    return _generation.run_op("voxel_guided", params, {"voxel_centers": centers}, args)
