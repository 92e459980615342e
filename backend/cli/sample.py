"""Generate new shapes from a LION model."""
from backend.cli import _generation


def add_arguments(parser):
    _generation.add_common_arguments(parser, "sample")
    _generation.add_field_option(parser, "sample", "size")
    _generation.add_field_option(parser, "sample", "category",
                                 help="what kind of shape, for a model trained on categories (its model card lists them)")
    _generation.add_field_option(parser, "sample", "guidance")


def run(args):
    return _generation.run_op("sample", _generation.field_params(args, "sample"), {}, args)
