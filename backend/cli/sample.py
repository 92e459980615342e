"""Generate new shapes from a LION model."""
from backend.cli import _generation


def add_arguments(parser):
    _generation.add_common_arguments(parser)
    parser.add_argument("--size", type=float, default=1.0, help="half of the longest side of each shape (default 1)")
    parser.add_argument("--category", default="any",
                        help="what kind of shape, for a model trained on categories (its model card lists them; default any)")
    parser.add_argument("--guidance", type=float, default=2.0,
                        help="classifier-free guidance scale of --category (1: plain conditional; default 2)")


def run(args):
    params = {**_generation.common_params(args), "count": args.count, "size": args.size,
              "category": args.category, "guidance": args.guidance}
    return _generation.run_op("sample", params, {}, args)
