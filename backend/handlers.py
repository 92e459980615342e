"""The ops the backend serves, each a function (params, arrays, context) -> (result, arrays).

`params` is the request header without "id" and "op"; `arrays` its named numpy arrays. A
handler raises RequestError for anything wrong with the request (its message is shown to the
artist), calls context.progress() as it goes, and context.check_cancelled() at least once per
diffusion step so that a cancel takes effect within one step.
"""
import os
import platform

import numpy as np

from backend import __version__, devices, model_store, op_schema, protocol


class RequestError(Exception):
    """The request cannot be served as asked; the message tells the artist why."""


class Cancelled(Exception):
    """The job was cancelled by a `cancel` request."""


class JobContext:
    """What a running handler may do besides computing: report progress and notice cancel."""

    def __init__(self, cancelled_event, send_event):
        self._cancelled = cancelled_event
        self._send_event = send_event

    def check_cancelled(self):
        if self._cancelled.is_set():
            raise Cancelled()

    def progress(self, step, total, stage):
        """Report that `step` of `total` units of `stage` are done, then honour a pending cancel."""
        self._send_event({"type": "progress", "step": int(step), "total": int(total), "stage": str(stage)})
        self.check_cancelled()


def backend_version():
    return __version__


def kernel_info():
    """Which point-voxel operators run on each device (compiled or the PyTorch reference), and why."""
    try:
        from kernels import ops
    except ImportError as exc:
        return {"active": "unavailable", "reason": f"kernels package not importable: {exc}"}
    return ops.implementation_info()


_runtime = {}


def _device():
    """The torch device of this process: LION_DEVICE (auto/cuda/mps/cpu), resolved once."""
    if "device" not in _runtime:
        try:
            _runtime["device"], _runtime["device_note"] = devices.resolve_device(os.environ.get("LION_DEVICE", "auto"))
        except ValueError as exc:
            raise RequestError(f"LION_DEVICE: {exc}") from None
    return _runtime["device"]


def _models():
    if "models" not in _runtime:
        _runtime["models"] = model_store.ModelCache(_device())
    return _runtime["models"]


def hello(params, arrays, context):
    """Describe this backend: versions, devices, the active device, kernels and models."""
    import torch

    _fields("hello", params)
    device = _device()
    models, skipped = model_store.scan_models()
    return {
        "protocol_version": protocol.PROTOCOL_VERSION,
        "backend_version": backend_version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "devices": devices.available_devices(),
        "device": str(device),
        "device_note": _runtime["device_note"],
        "kernels": kernel_info(),
        "models": models,
        "skipped_models": skipped,
    }, None


# -- request fields ------------------------------------------------------------------------------

def _fields(op, params):
    """The op's fields, checked against backend/op_schema.py (the model's own limits follow
    in `_fit_model`)."""
    try:
        return op_schema.parse(op, params)
    except op_schema.SchemaError as exc:
        raise RequestError(str(exc)) from None


def _fit_model(op, values, model):
    """Check the fields bounded by the model's number of diffusion steps T against its T."""
    num_steps = model.config.diffusion.num_steps
    for name, spec in op_schema.OPS[op].items():
        if spec.capped_by_steps and values[name] is not None:
            try:
                spec.parse(values[name], num_steps)
            except op_schema.SchemaError as exc:
                raise RequestError(str(exc)) from None


def _tau(values, num_steps):
    """The diffusion step a variation starts from: `tau`, else `similarity` mapped onto the
    model's own T (pipelines.tau_from_similarity)."""
    from backend.pipelines import tau_from_similarity

    return values["tau"] if values["tau"] is not None else tau_from_similarity(values["similarity"], num_steps)


def _load(op, params):
    """(request fields, model name, model, metadata): the fields checked, then the model loaded
    and the step-bounded fields checked against its T."""
    request = _fields(op, params)
    try:
        name, model, metadata = _models().get(request["model"])
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    _fit_model(op, request, model)
    return request, name, model, metadata


def _settings(request):
    from backend.pipelines import SamplerSettings

    return SamplerSettings(sampler=request["sampler"], steps=request["steps"], eta=request["eta"])


def _generator(request):
    """A CPU generator: the same seed gives the same shapes on every device."""
    import torch

    return torch.Generator().manual_seed(request["seed"])


def _progress(context):
    return lambda step, total, stage: context.progress(step, total, stage)


def _model_half_extent(metadata):
    """Half the longest side of a typical training shape in the model's normalized space."""
    return float(metadata.get("typical_half_extent") or 1.0)


def _shape_frame(points, metadata, matrix):
    from backend.geometry import GeometryError, ShapeFrame

    try:
        return ShapeFrame.fit(points, _model_half_extent(metadata), matrix)
    except GeometryError as exc:
        raise RequestError(str(exc)) from None


def _input_points(arrays, count, seed, suffix=""):
    """World-space points on the shape sent as vertices/faces (+ matrix), and its matrix."""
    from backend.geometry import GeometryError, shape_points

    vertices = arrays.get(f"vertices{suffix}")
    if vertices is None:
        raise RequestError(f"the request needs the array 'vertices{suffix}' (float [V, 3])")
    try:
        points = shape_points(vertices, arrays.get(f"faces{suffix}"), count, seed)
    except GeometryError as exc:
        raise RequestError(str(exc)) from None
    return points, arrays.get(f"matrix{suffix}")


def _to_tensor(points, device):
    import torch

    return torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)).to(device)


def _results(request, points_world, context):
    """The result of a generation op: points, and meshes when output is "mesh"."""
    arrays = {"points": np.ascontiguousarray(points_world, dtype=np.float64)}  # world: float64 keeps detail far out
    header = {"output": request["output"]}
    if request["output"] == "mesh":
        for index, points in enumerate(points_world):
            context.progress(index, len(points_world), "reconstructing meshes")
            vertices, faces, header["normals"] = _reconstruct_points(points, request)
            arrays[f"mesh_vertices_{index}"], arrays[f"mesh_faces_{index}"] = vertices, faces
    return header, arrays


def _sap_network(request):
    """The model's Shape As Points network, or None (estimated normals): field "normals" is
    "auto" (the network where the model ships one), "network" or "estimated"."""
    choice = request["normals"]
    path = None if choice == "estimated" else model_store.sap_network_path(request["model"])
    if path is None:
        if choice == "network":
            raise RequestError("this model ships no Shape As Points network; use normals 'auto' or 'estimated'")
        return None
    if "sap" not in _runtime:
        _runtime["sap"] = model_store.sap_network_cache(_device())
    return _runtime["sap"].get(path)


def _reconstruct_points(points, request):
    """(vertices float64 [V, 3] in the points' frame, faces int32 [F, 3], "network" or "estimated")."""
    from backend.sap.reconstruct import reconstruct as reconstruct_mesh

    network = _sap_network(request)
    try:
        mesh = reconstruct_mesh(points, network=network, resolution=request["resolution"], device=_device())
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    return mesh.vertices.astype(np.float64), mesh.faces.astype(np.int32), "estimated" if network is None else "network"


def _check_category(category, model, name):
    if category != "any" and category not in model.categories:
        known = ", ".join(["any", *model.categories])
        raise RequestError(f"category must be one of {known} for model {name}, got {category!r}")


def _kept_category(request, model, name, shape, encoder=None):
    """The category variations of `shape` stay: the request's, or for "auto" the input's own
    as the model infers it ("any" for a model without categories)."""
    from backend import pipelines

    category = request["category"]
    if category == "auto":
        category = pipelines.shape_category(model, shape, encoder) or "any"
    _check_category(category, model, name)
    return category


def _generation_header(name, request):
    return {"model": name, **{key: request[key] for key in ("seed", "sampler", "steps", "eta")}}


# -- ops -----------------------------------------------------------------------------------------

def load_model(params, arrays, context):
    """Load (or keep) a model and describe it."""
    _, name, model, metadata = _load("load_model", params)
    return {"model": name, "config": model.config.to_dict(), "parameters": model.parameter_counts(),
            "metadata": metadata, "categories": model.categories, "num_steps": model.config.diffusion.num_steps}, None


def sample(params, arrays, context):
    """`count` new shapes placed at `center` with longest half-extent `size`, in the frame of
    the optional `matrix` array."""
    from backend import pipelines
    from backend.geometry import GeometryError, ShapeFrame

    request, name, model, metadata = _load("sample", params)
    try:
        frame = ShapeFrame.placed(np.array(request["center"]), request["size"], _model_half_extent(metadata),
                                  arrays.get("matrix"))
    except GeometryError as exc:
        raise RequestError(str(exc)) from None
    category = request["category"]
    _check_category(category, model, name)
    points = pipelines.sample(model, request["count"], _generator(request), _settings(request), _progress(context),
                              category=category, guidance=request["guidance"])
    header, arrays_out = _results(request, frame.to_world(points.cpu().numpy()), context)
    return {**header, **_generation_header(name, request), "count": request["count"], "category": category,
            "guidance": request["guidance"]}, arrays_out


def variations(params, arrays, context):
    """`count` variations of the input shape, diffused to `tau` and denoised."""
    from backend import pipelines

    request, name, model, metadata = _load("variations", params)
    tau = _tau(request, model.config.diffusion.num_steps)
    points, matrix = _input_points(arrays, model.config.vae.num_points, request["seed"])
    frame = _shape_frame(points, metadata, matrix)
    shape = _to_tensor(frame.to_model(points), _device())
    category = _kept_category(request, model, name, shape)
    generated = pipelines.variations(model, shape, request["count"], tau, _generator(request), _settings(request),
                                     _progress(context), category=None if category == "any" else category)
    header, arrays_out = _results(request, frame.to_world(generated.cpu().numpy()), context)
    return {**header, **_generation_header(name, request), "count": request["count"], "tau": tau,
            "category": category}, arrays_out


def interpolate(params, arrays, context):
    """`frames` shapes morphing from shape A to shape B."""
    from backend import pipelines

    request, name, model, metadata = _load("interpolate", params)
    frames = request["frames"]
    count = model.config.vae.num_points
    points_a, matrix_a = _input_points(arrays, count, request["seed"], "_a")
    points_b, matrix_b = _input_points(arrays, count, request["seed"], "_b")
    frame_a, frame_b = _shape_frame(points_a, metadata, matrix_a), _shape_frame(points_b, metadata, matrix_b)
    device = _device()
    generated = pipelines.interpolate(model, _to_tensor(frame_a.to_model(points_a), device),
                                      _to_tensor(frame_b.to_model(points_b), device), frames, _settings(request),
                                      _progress(context)).cpu().numpy()
    world = [frame_a.blend(frame_b, k / (frames - 1)).to_world(points) for k, points in enumerate(generated)]
    header, arrays_out = _results(request, np.stack(world), context)
    return {**header, **_generation_header(name, request), "frames": frames}, arrays_out


def regenerate_region(params, arrays, context):
    """Keep the points marked in `keep`, regenerate the rest."""
    import torch

    from backend import pipelines
    from backend.geometry import GeometryError, validate_vertices

    request, name, model, metadata = _load("regenerate_region", params)
    count = model.config.vae.num_points
    try:
        points = validate_vertices(arrays.get("points", np.zeros((0, 3))), "points")
    except GeometryError as exc:
        raise RequestError(str(exc)) from None
    keep = arrays.get("keep")
    if len(points) != count or keep is None or keep.shape != (count,) or keep.dtype != np.bool_:
        raise RequestError(f"regenerate_region needs 'points' float [{count}, 3] (a LION result) and 'keep' bool "
                           f"[{count}]; got points {list(points.shape)} and keep "
                           f"{None if keep is None else (str(keep.dtype), list(keep.shape))}")
    if keep.all() or not keep.any():
        raise RequestError("select some points to keep and some to regenerate (the selection is all or nothing)")
    frame = _shape_frame(points, metadata, arrays.get("matrix"))
    device = _device()
    generated = pipelines.regenerate_region(model, _to_tensor(frame.to_model(points), device),
                                            torch.from_numpy(keep).to(device), _generator(request),
                                            _settings(request), _progress(context))
    header, arrays_out = _results(request, frame.to_world(generated.cpu().numpy()), context)
    return {**header, **_generation_header(name, request)}, arrays_out


def voxel_guided(params, arrays, context):
    """Shapes that follow a blocky voxel guide: its surface points, encoded, diffused and denoised."""
    from backend import pipelines, voxels

    request, name, model, metadata = _load("voxel_guided", params)
    tau = _tau(request, model.config.diffusion.num_steps)
    centers = arrays.get("voxel_centers")
    if centers is not None and len(centers) > op_schema.MAX_GUIDE_VOXELS:
        raise RequestError(f"the voxel guide has {len(centers):,} voxels, more than the {op_schema.MAX_GUIDE_VOXELS:,} "
                           f"of a solid {op_schema.GUIDE_RESOLUTION.maximum}³ guide")
    try:
        points = voxels.voxel_surface_points(centers, request["voxel_size"],
                                             model.config.vae.num_points, seed=request["seed"])
    except (ValueError, TypeError) as exc:
        raise RequestError(f"voxel guide: {exc}") from None
    frame = _shape_frame(points, metadata, arrays.get("matrix"))
    encoder = model.encode_voxel_guide
    shape = _to_tensor(frame.to_model(points), _device())
    category = _kept_category(request, model, name, shape, encoder)
    # LION's diffuse-denoise: fresh noise is what lets the prior replace the guide's blocks.
    generated = pipelines.variations(model, shape, request["count"], tau, _generator(request), _settings(request),
                                     _progress(context), encoder=encoder, invert_points=False,
                                     category=None if category == "any" else category)
    header, arrays_out = _results(request, frame.to_world(generated.cpu().numpy()), context)
    return {**header, **_generation_header(name, request), "count": request["count"], "tau": tau,
            "category": category, "encoder": "voxel" if encoder is not None else "standard"}, arrays_out


def reconstruct(params, arrays, context):
    """A watertight mesh through the points (Shape As Points), in their frame."""
    request = _fields("reconstruct", params)
    points = arrays.get("points")
    if points is None:
        raise RequestError("reconstruct needs the array 'points' (float [P, 3])")
    context.progress(0, 1, "reconstructing mesh")
    vertices, faces, normals = _reconstruct_points(points, request)
    return ({"vertex_count": len(vertices), "face_count": len(faces), "normals": normals},
            {"vertices": vertices, "faces": faces})


OPS = {
    "hello": hello,
    "load_model": load_model,
    "sample": sample,
    "variations": variations,
    "interpolate": interpolate,
    "regenerate_region": regenerate_region,
    "voxel_guided": voxel_guided,
    "reconstruct": reconstruct,
}
