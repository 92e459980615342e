"""Morph shape A into shape B in K frames (points keep their index across frames)."""
from backend.cli import _generation


def add_arguments(parser):
    parser.add_argument("shape_a", help="first shape: mesh or .npy points")
    parser.add_argument("shape_b", help="last shape: mesh or .npy points")
    _generation.add_common_arguments(parser, "interpolate")
    _generation.add_field_option(parser, "interpolate", "frames")


def run(args):
    arrays = {}
    try:
        for suffix, path in (("_a", args.shape_a), ("_b", args.shape_b)):
            vertices, faces = _generation.read_shape(path)
            arrays[f"vertices{suffix}"] = vertices
            if faces is not None:
                arrays[f"faces{suffix}"] = faces
    except ValueError as error:
        return _generation.fail(error)
    return _generation.run_op("interpolate", _generation.field_params(args, "interpolate"), arrays, args)
