"""Generate variations of a shape (diffuse to step tau, then denoise)."""
from backend.cli import _generation


def add_arguments(parser):
    parser.add_argument("input", help="the shape: a mesh (.ply/.obj/.stl/.off/.glb) or points (.npy [N, 3])")
    _generation.add_common_arguments(parser, "variations")
    _generation.add_start_arguments(parser, "variations", "stays close")


def run(args):
    try:
        vertices, faces = _generation.read_shape(args.input)
    except ValueError as error:
        return _generation.fail(error)
    params = _generation.field_params(args, "variations")
    arrays = {"vertices": vertices} if faces is None else {"vertices": vertices, "faces": faces}
    return _generation.run_op("variations", params, arrays, args)
