"""sample: `count` new shapes placed at `center` with longest half-extent `size`, in the frame of
the optional `matrix` array."""
import numpy as np

from backend import pipelines
from backend.geometry import ShapeFrame
from backend.serve import fields, shapes


def run(session, params, arrays, context):
    request, name, model, metadata = fields.load(session, "sample", params)
    frame = ShapeFrame.placed(np.array(request["center"]), request["size"], shapes.model_half_extent(metadata),
                              arrays.get("matrix"))
    category = request["category"]
    fields.check_category(category, model, name)
    points = pipelines.sample(model, request["count"], fields.generator(request), fields.sampler(request),
                              fields.progress(context), category=category, guidance=request["guidance"])
    header, results = shapes.results(session, request, frame.to_world(points.cpu().numpy()), context)
    return {**header, **fields.generation_header(name, request), "count": request["count"], "category": category,
            "guidance": request["guidance"]}, results
