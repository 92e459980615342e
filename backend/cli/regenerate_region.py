"""Keep part of a generated shape and regenerate the rest."""
import numpy as np

from backend.cli import _generation


def add_arguments(parser):
    parser.add_argument("input", help="a LION result: .npy [N, 3] or a point .ply (N = the model's points)")
    parser.add_argument("--keep", required=True, help=".npy bool [N]: True for the points to keep")
    _generation.add_common_arguments(parser, "regenerate_region")


def run(args):
    try:
        points, _ = _generation.read_shape(args.input)
        keep = np.load(args.keep, allow_pickle=False)
    except (OSError, ValueError) as error:
        return _generation.fail(error)
    return _generation.run_op("regenerate_region", _generation.field_params(args, "regenerate_region"),
                              {"points": points, "keep": keep.astype(bool)}, args)
