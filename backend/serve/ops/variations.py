"""variations: `count` variations of the input shape, diffused to `tau` and denoised."""
from backend import pipelines
from backend.serve import fields, shapes


def run(session, params, arrays, context):
    request, name, model, metadata = fields.load(session, "variations", params)
    tau = fields.tau(request, model)
    points, matrix = shapes.input_points(arrays, model.config.vae.num_points, request["seed"])
    frame = shapes.shape_frame(points, metadata, matrix)
    shape = shapes.in_model_space(frame, points, session.device)
    category = fields.kept_category(request, model, name, shape)
    generated = pipelines.variations(model, shape, request["count"], tau, fields.generator(request),
                                     fields.sampler(request), fields.progress(context),
                                     category=fields.condition(category))
    header, results = shapes.results(session, request, frame.to_world(generated.cpu().numpy()), context)
    return {**header, **fields.generation_header(name, request), "count": request["count"], "tau": tau,
            "category": category}, results
