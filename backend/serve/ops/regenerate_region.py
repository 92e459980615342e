"""regenerate_region: keep the points of a LION result marked in `keep`, regenerate the rest."""
import numpy as np

from backend import pipelines
from backend.geometry import validate_vertices
from backend.serve import fields, shapes
from backend.serve.job import RequestError


def run(session, params, arrays, context):
    import torch

    request, name, model, metadata = fields.load(session, "regenerate_region", params)
    count = model.config.vae.num_points
    points = validate_vertices(arrays.get("points", np.zeros((0, 3))), "points")
    keep = arrays.get("keep")
    if len(points) != count or keep is None or keep.shape != (count,) or keep.dtype != np.bool_:
        raise RequestError(f"regenerate_region needs 'points' float [{count}, 3] (a LION result) and 'keep' bool "
                           f"[{count}]; got points {list(points.shape)} and keep "
                           f"{None if keep is None else (str(keep.dtype), list(keep.shape))}")
    if keep.all() or not keep.any():
        raise RequestError("select some points to keep and some to regenerate (the selection is all or nothing)")
    frame = shapes.shape_frame(points, metadata, arrays.get("matrix"))
    generated = pipelines.regenerate_region(model, shapes.in_model_space(frame, points, session.device),
                                            torch.from_numpy(keep).to(session.device), fields.generator(request),
                                            fields.sampler(request), fields.progress(context))
    header, results = shapes.results(session, request, frame.to_world(generated.cpu().numpy()), context)
    return {**header, **fields.generation_header(name, request)}, results
