"""The ops the backend serves, one module each, each `run(session, params, arrays, context) ->
(reply fields, reply arrays)`.

`params` is the request header without "id" and "op", checked against backend/op_schema.py;
`arrays` its named numpy arrays. An op raises RequestError for anything wrong with the request
and calls context.progress() as it goes.
"""
from backend.geometry import GeometryError
from backend.serve.job import RequestError
from backend.serve.ops import (hello, interpolate, load_model, reconstruct, regenerate_region, sample, variations,
                               voxel_guided)

OPS = {module.__name__.rsplit(".", 1)[1]: module.run
       for module in (hello, load_model, sample, variations, interpolate, regenerate_region, voxel_guided, reconstruct)}


def run(session, op, params, arrays, context):
    """Run `op`: the one entry for the server and the command line, and the one place where
    geometry that cannot be used becomes a bad request."""
    try:
        return OPS[op](session, params, arrays, context)
    except GeometryError as exc:
        raise RequestError(str(exc)) from None
