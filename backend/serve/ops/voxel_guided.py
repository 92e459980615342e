"""voxel_guided: shapes that follow a blocky voxel guide (its voxel centres and size)."""
from backend import op_schema, pipelines, voxels
from backend.serve import fields, shapes
from backend.serve.job import RequestError


def run(session, params, arrays, context):
    request, name, model, metadata = fields.load(session, "voxel_guided", params)
    tau = fields.tau(request, model)
    centers = arrays.get("voxel_centers")
    if centers is not None and len(centers) > op_schema.MAX_GUIDE_VOXELS:
        raise RequestError(f"the voxel guide has {len(centers):,} voxels, more than the {op_schema.MAX_GUIDE_VOXELS:,} "
                           f"of a solid {op_schema.GUIDE_RESOLUTION.maximum}³ guide")
    try:
        points = voxels.voxel_surface_points(centers, request["voxel_size"], model.config.vae.num_points,
                                             seed=request["seed"])
    except (ValueError, TypeError) as exc:
        raise RequestError(f"voxel guide: {exc}") from None
    frame = shapes.shape_frame(points, metadata, arrays.get("matrix"))
    guide = shapes.in_model_space(frame, points, session.device)
    category = fields.kept_category(request, model, name, guide, model.encode_voxel_guide)
    generated = pipelines.voxel_guided(model, guide, request["count"], tau, fields.generator(request),
                                       fields.sampler(request), fields.progress(context),
                                       category=fields.condition(category))
    header, results = shapes.results(session, request, frame.to_world(generated.cpu().numpy()), context)
    return {**header, **fields.generation_header(name, request), "count": request["count"], "tau": tau,
            "category": category, "encoder": "voxel" if model.encode_voxel_guide is not None else "standard"}, results
