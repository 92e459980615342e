"""interpolate: `frames` shapes morphing from shape A to shape B."""
import numpy as np

from backend import pipelines
from backend.serve import fields, shapes


def run(session, params, arrays, context):
    request, name, model, metadata = fields.load(session, "interpolate", params)
    frames, count = request["frames"], model.config.vae.num_points
    points_a, matrix_a = shapes.input_points(arrays, count, request["seed"], "_a")
    points_b, matrix_b = shapes.input_points(arrays, count, request["seed"], "_b")
    frame_a = shapes.shape_frame(points_a, metadata, matrix_a)
    frame_b = shapes.shape_frame(points_b, metadata, matrix_b)
    generated = pipelines.interpolate(model, shapes.in_model_space(frame_a, points_a, session.device),
                                      shapes.in_model_space(frame_b, points_b, session.device), frames,
                                      fields.sampler(request), fields.progress(context)).cpu().numpy()
    # Each frame goes back to the world through its own blend of A's and B's frames.
    world = [frame_a.blend(frame_b, k / (frames - 1)).to_world(points) for k, points in enumerate(generated)]
    header, results = shapes.results(session, request, np.stack(world), context)
    return {**header, **fields.generation_header(name, request), "frames": frames}, results
