"""What each LION action sends to the backend and what it makes of the reply.

Each `start_*` function checks the selection, reads the geometry, starts the job (see jobs.py)
and returns it; the job's finish step creates the result objects when every reply is in. The
operators (operators.py) only decide whether to wait for the job here (background mode) or to
poll it from a timer (the UI). `settings` is any object with the action's settings as
attributes (an operator, or the scene's LION settings).

Finish steps use `bpy.context` as it is when the replies arrive: the context the action
started in belongs to an event long gone. They keep arrays and names, not bpy objects, so the
artist may delete or rename an input while the job runs.
"""
import bpy
import numpy as np
from mathutils import Matrix

from . import jobs, mesh_io, voxel_guide
from .jobs import Task
from .layout import (LAYOUT_GAP, Source, generation_params, layout_offsets, model_frame, point_radius,
                     reply_shapes, result_properties, shape_arrays, transform, translation)
from .mesh_io import SelectionError
from .preferences import backend_client

BLEND_PROPERTY = "lion_blend"
VOXEL_SIZE, VOXEL_ORIGIN, VOXEL_RESOLUTION = "lion_voxel_size", "lion_voxel_origin", "lion_voxel_resolution"


def _start(label, context, tasks, finish):
    """Start a job; a first contact with the backend asks for its hello (status line, models)."""
    client = backend_client(context)
    if client.hello is None:
        tasks = [Task("hello")] + list(tasks)
        return jobs.start(label, client, tasks, lambda replies: finish(replies[1:]))
    return jobs.start(label, client, tasks, finish)


def _select_only(context, objects):
    """Make the new results the selection (Object Mode only: Edit Mode keeps its object)."""
    if context.mode != "OBJECT" or not objects:
        return
    for obj in context.selected_objects:
        obj.select_set(False)
    for obj in objects:
        obj.select_set(True)
    context.view_layer.objects.active = objects[0]


def _create_results(context, header, arrays, source, name, properties, first_offset=1):
    """Objects for the `points` [K, N, 3] (or meshes) of one reply, laid out beside `source`."""
    collection = mesh_io.results_collection(context.scene)
    shapes = reply_shapes(header, arrays)
    created = []
    for index, ((vertices, faces), offset) in enumerate(zip(shapes, layout_offsets(source.width, len(shapes),
                                                                                 start=first_offset))):
        matrix = Matrix(source.result_matrix(offset))
        label = f"{name} {index + 1}" if len(shapes) > 1 else name
        local = source.to_local(vertices)
        if faces is not None:
            created.append(mesh_io.add_object(label, mesh_io.new_polygon_mesh(label, local, faces), collection,
                                              matrix, properties))
        else:
            obj = mesh_io.add_object(label, mesh_io.new_points_mesh(label, local), collection, matrix, properties)
            mesh_io.show_as_points(obj, point_radius(local))
            created.append(obj)
    return created


def _read_sources(context, objects):
    depsgraph = context.evaluated_depsgraph_get()
    shapes = []
    for obj in objects:
        vertices, faces, matrix = read_shape(obj, depsgraph)
        shapes.append((Source(obj.name, matrix, vertices), vertices, faces))
    return shapes


def read_shape(obj, depsgraph):
    """World-space (vertices float64 [V, 3], triangles int32 [F, 3], matrix float64 [4, 4]) of an
    input: a LION point result gives its points (no faces), any other mesh its evaluated surface."""
    if mesh_io.POINTS_MODIFIER in obj.modifiers and obj.type == "MESH":
        vertices = mesh_io.read_vertices(obj)
        if len(vertices) == 0:
            raise SelectionError(f"'{obj.name}' is an empty mesh: it has no vertices")
        return vertices, np.empty((0, 3), dtype=np.int32), mesh_io.matrix_array(obj.matrix_world)
    return mesh_io.read_evaluated_mesh(obj, depsgraph)


# -- the actions -------------------------------------------------------------------------------------

def start_generate(context, settings):
    """`settings.count` fresh shapes at the 3D cursor, `settings.size` half-extent each."""
    size = float(settings.size)
    cursor = np.array(context.scene.cursor.location, dtype=np.float64)
    params = {**generation_params(settings), "count": int(settings.count), "size": size}
    category = getattr(settings, "category", "any")  # callers without a category setting mean any
    if category and category != "any":
        params.update(category=str(category), guidance=float(settings.guidance))
    source = Source("LION Sample", translation(cursor), np.array([[-size] * 3, [size] * 3]))
    arrays = {"matrix": model_frame(translation(cursor))}  # upright, at the cursor

    def finish(replies):
        context = bpy.context
        header, arrays = replies[0]
        created = _create_results(context, header, arrays, source, "LION Sample",
                                  result_properties("sample", header, settings), first_offset=0)
        _select_only(context, created)
        return f"Generated {len(created)} shape(s)"

    return _start("Generate", context, [Task("sample", params, arrays)], finish)


def start_variations(context, settings):
    """`settings.count` variations of each selected mesh, beside it."""
    objects = mesh_io.selected_meshes(context, action="Generate Variations")
    shapes = _read_sources(context, objects)
    params = {**generation_params(settings), "count": int(settings.count), "similarity": float(settings.similarity)}
    tasks = [Task("variations", params, shape_arrays(v, f, s.matrix)) for s, v, f in shapes]

    def finish(replies):
        context = bpy.context
        created = []
        for (source, _, _), (header, arrays) in zip(shapes, replies):
            created += _create_results(context, header, arrays, source, f"{source.name} variation",
                                       result_properties("variations", header, settings, source.name))
        _select_only(context, created)
        return f"Created {len(created)} variation(s)"

    return _start("Variations", context, tasks, finish)


def start_interpolate(context, settings):
    """One object morphing between the two selected meshes: a shape key per frame, a slider."""
    objects = mesh_io.selected_meshes(context, count=2, action="Interpolate")
    (source_a, vertices_a, faces_a), (source_b, vertices_b, faces_b) = _read_sources(context, objects)
    frames = int(settings.frames)
    params = {**generation_params(settings), "frames": frames, "output": "points"}
    arrays = {**shape_arrays(vertices_a, faces_a, source_a.matrix, "_a"),
              **shape_arrays(vertices_b, faces_b, source_b.matrix, "_b")}
    both = np.concatenate([vertices_a, vertices_b])
    # Frames travel from A's place to B's: the morph runs in a lane in front of both (-Y).
    offset = np.array([0.0, -(float(np.ptp(both[:, 1])) * (1.0 + LAYOUT_GAP)), 0.0])

    def finish(replies):
        context = bpy.context
        header, result = replies[0]
        name = f"{source_a.name} to {source_b.name}"
        obj = create_interpolation(context, name, result["points"], offset,
                                   {**result_properties("interpolate", header, settings), "source": source_a.name,
                                    "target": source_b.name, "frames": frames})
        _select_only(context, [obj])
        return f"Interpolated {frames} frames: drag '{name}' → LION blend to morph"

    return _start("Interpolate", context, [Task("interpolate", params, arrays)], finish)


def create_interpolation(context, name, frames_world, offset, properties):
    """A points object whose shape keys are the frames (float [K, N, 3], world space) and whose
    `lion_blend` property (0..1) drives them, placed at the world-space `offset` float [3]."""
    count = len(frames_world)
    # The object sits at the first frame's centre, its vertices relative to it: float32 vertices
    # keep their detail however far from the origin the frames are.
    anchor = np.asarray(frames_world[0], np.float64).mean(axis=0)
    local = (np.asarray(frames_world, np.float64) - anchor).astype(np.float32)
    collection = mesh_io.results_collection(context.scene)
    obj = mesh_io.add_object(name, mesh_io.new_points_mesh(name, local[0]), collection,
                             Matrix.Translation(anchor + offset), properties)
    mesh_io.show_as_points(obj, point_radius(local[0]))
    obj[BLEND_PROPERTY] = 0.0
    obj.id_properties_ui(BLEND_PROPERTY).update(min=0.0, max=1.0, soft_min=0.0, soft_max=1.0, subtype="FACTOR",
                                                description="Position along the interpolation: 0 is the first "
                                                            "shape, 1 the second")
    obj.shape_key_add(name="Frame 1", from_mix=False)
    for index in range(1, count):
        key = obj.shape_key_add(name=f"Frame {index + 1}", from_mix=False)
        key.data.foreach_set("co", local[index].ravel())
        # A tent around this frame's slider position: neighbouring frames cross-fade linearly.
        driver = key.driver_add("value").driver
        driver.type = "SCRIPTED"
        variable = driver.variables.new()
        variable.name, variable.type = "blend", "SINGLE_PROP"
        variable.targets[0].id_type, variable.targets[0].id = "OBJECT", obj
        variable.targets[0].data_path = f'["{BLEND_PROPERTY}"]'
        driver.expression = f"max(0.0, 1.0 - abs(blend * {count - 1} - {index}))"
    return obj


def bake_interpolation(obj, frame_start, frame_end):
    """Keyframe `obj`'s blend slider from 0 at `frame_start` to 1 at `frame_end`, linearly."""
    if BLEND_PROPERTY not in obj:
        raise SelectionError(f"'{obj.name}' is not a LION interpolation (it has no blend slider)")
    if frame_end <= frame_start:
        raise ValueError(f"frame_end ({frame_end}) must come after frame_start ({frame_start})")
    path = f'["{BLEND_PROPERTY}"]'
    for frame, value in ((frame_start, 0.0), (frame_end, 1.0)):
        obj[BLEND_PROPERTY] = value
        obj.keyframe_insert(path, frame=frame)
    for curve in animated_fcurves(obj.animation_data):
        if curve.data_path == path:
            for point in curve.keyframe_points:
                point.interpolation = "LINEAR"


def animated_fcurves(animation_data):
    """The F-curves that drive this animation data's owner. Layered actions (Blender 4.4 on;
    the only kind in 5.x, where `Action.fcurves` is gone) keep them in the channel bag of the
    owner's slot; older actions hold them directly. Chosen by what the API offers."""
    action = animation_data.action
    slot = getattr(animation_data, "action_slot", None)
    if slot is None or not hasattr(action, "layers"):
        return list(action.fcurves)
    curves = []
    for layer in action.layers:
        for strip in layer.strips:
            bag = strip.channelbag(slot)
            if bag is not None:
                curves.extend(bag.fcurves)
    return curves


def start_regenerate_region(context, settings):
    """Keep the selected vertices of the active LION point result, regenerate the rest."""
    obj = context.active_object
    if obj is None:
        raise SelectionError("Nothing is active: select a LION point result and, in Edit Mode, the points to keep")
    if obj.type != "MESH":
        raise SelectionError(mesh_io.describe_non_mesh(obj))
    vertices, keep = mesh_io.read_vertices(obj, selected_only=True)
    if len(vertices) == 0:
        raise SelectionError(f"'{obj.name}' is an empty mesh: it has no vertices")
    if not keep.any():
        raise SelectionError("No vertices are selected: in Edit Mode, select the points to keep")
    if keep.all():
        raise SelectionError("Every vertex is selected: leave unselected the points to regenerate")
    source = Source(obj.name, mesh_io.matrix_array(obj.matrix_world), vertices)
    params = generation_params(settings)
    if not params.get("model") and obj.get("model"):
        params["model"] = obj["model"]
    task = Task("regenerate_region", params, {"points": vertices, "keep": keep, "matrix": model_frame(source.matrix)})

    def finish(replies):
        context = bpy.context
        header, arrays = replies[0]
        created = _create_results(context, header, arrays, source, f"{source.name} regenerated",
                                  result_properties("regenerate_region", header, settings, source=source.name))
        _select_only(context, created)
        return f"Regenerated {int((~keep).sum())} of {len(keep)} points"

    return _start("Regenerate Region", context, [task], finish)


def start_reconstruct(context, settings):
    """A watertight mesh through the points of each selected object, beside it."""
    objects = mesh_io.selected_meshes(context, action="Reconstruct Mesh")
    shapes = _read_sources(context, objects)
    params = {"resolution": int(settings.resolution), "smoothing": float(settings.smoothing)}
    tasks = [Task("reconstruct", params, {"points": vertices})
             for _, vertices, _ in shapes]

    def finish(replies):
        context = bpy.context
        collection = mesh_io.results_collection(context.scene)
        created = []
        for (source, _, _), (_, arrays) in zip(shapes, replies):
            matrix = source.result_matrix(layout_offsets(source.width, 1)[0])
            vertices = source.to_local(arrays["vertices"])
            name = f"{source.name} mesh"
            data = mesh_io.new_polygon_mesh(name, vertices, arrays["faces"])
            created.append(mesh_io.add_object(name, data, collection, Matrix(matrix),
                                              {"op": "reconstruct", "source": source.name,
                                               **params}))
        _select_only(context, created)
        return f"Reconstructed {len(created)} mesh(es)"

    return _start("Reconstruct Mesh", context, tasks, finish)


def make_voxel_guides(context, resolution):
    """Turn each selected mesh into a blocky voxel guide beside it (no backend); return them."""
    objects = mesh_io.selected_meshes(context, action="Make Voxel Guide")
    depsgraph = context.evaluated_depsgraph_get()
    collection = mesh_io.results_collection(context.scene)
    created = []
    for obj in objects:
        vertices, faces, matrix = read_shape(obj, depsgraph)
        source = Source(obj.name, matrix, vertices)
        local = source.to_local(vertices)
        cells, origin, size = voxel_guide.voxelize_mesh(local, faces, resolution)
        guide_vertices, quads = voxel_guide.guide_mesh(cells, origin, size)
        name = f"{obj.name} voxel guide"
        data = mesh_io.new_polygon_mesh(name, guide_vertices, quads, smooth=False)
        created.append(mesh_io.add_object(
            name, data, collection, Matrix(source.result_matrix(layout_offsets(source.width, 1)[0])),
            {"op": "voxel_guide", "source": obj.name, VOXEL_SIZE: float(size), VOXEL_ORIGIN: list(map(float, origin)),
             VOXEL_RESOLUTION: int(resolution)}))
    _select_only(context, created)
    return created


def guide_voxels(obj, depsgraph, resolution):
    """World-space voxel centres float64 [M, 3], world voxel size and matrix float64 [4, 4] of a
    guide: read from its faces (so hand edits count), or made from any other mesh at `resolution`."""
    matrix = mesh_io.matrix_array(obj.matrix_world)
    if obj.mode == "EDIT":
        obj.update_from_editmode()
    if VOXEL_SIZE not in obj or not len(obj.data.polygons):
        vertices, faces, _ = read_shape(obj, depsgraph)
        cells, origin, size = voxel_guide.voxelize_mesh(vertices, faces, resolution)
        return origin + (cells + 0.5) * size, size, matrix
    mesh = obj.data
    centers, normals = (np.empty(len(mesh.polygons) * 3, dtype=np.float32) for _ in range(2))
    mesh.polygons.foreach_get("center", centers)
    mesh.polygons.foreach_get("normal", normals)
    size = float(obj[VOXEL_SIZE])
    local = voxel_guide.voxels_from_faces(centers.reshape(-1, 3), normals.reshape(-1, 3),
                                          np.array(obj[VOXEL_ORIGIN], dtype=np.float64), size)
    scale = abs(np.linalg.det(matrix[:3, :3])) ** (1.0 / 3.0)  # voxel edge in world units
    return transform(local, matrix), size * scale, matrix


def start_voxel_guided(context, settings):
    """`settings.count` shapes following each selected voxel guide (or any mesh, voxelized)."""
    objects = mesh_io.selected_meshes(context, action="Generate from Guide")
    depsgraph = context.evaluated_depsgraph_get()
    params = {**generation_params(settings), "count": int(settings.count), "similarity": float(settings.similarity)}
    tasks, sources = [], []
    for obj in objects:
        centers, size, matrix = guide_voxels(obj, depsgraph, int(settings.resolution))
        sources.append(Source(obj.name, matrix, centers))
        tasks.append(Task("voxel_guided", {**params, "voxel_size": size},
                          {"voxel_centers": centers, "matrix": model_frame(matrix)}))

    def finish(replies):
        context = bpy.context
        created = []
        for source, (header, arrays) in zip(sources, replies):
            created += _create_results(context, header, arrays, source, f"{source.name} guided",
                                       result_properties("voxel_guided", header, settings, source.name))
        _select_only(context, created)
        return f"Generated {len(created)} shape(s) from the guide"

    return _start("Generate from Guide", context, tasks, finish)

