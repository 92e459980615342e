"""Geometry between Blender and numpy: read what the artist sees, create LION's results.

Every array moves through foreach_get / foreach_set; nothing loops over vertices in Python.
"""
import bpy
import numpy as np

from .layout import transform
from .wire import op_schema

RESULTS_COLLECTION = "LION Results"
POINTS_NODE_GROUP = "LION Points"
POINTS_MODIFIER = "Mesh to Points"


class SelectionError(Exception):
    """The selection does not fit the action; the message tells the artist what to select."""


def _check_budget(name, count, what, limit):
    """Refuse a mesh beyond what the backend takes before copying it out of Blender."""
    if count > limit:
        raise SelectionError(f"'{name}' has {count:,} {what}, more than the {limit:,} LION takes: "
                             "reduce it first (e.g. a Decimate modifier)")


def describe_non_mesh(obj):
    kind = {"FONT": "a text object", "CURVE": "a curve", "SURFACE": "a surface", "META": "a metaball",
            "EMPTY": "an empty", "CAMERA": "a camera", "LIGHT": "a light", "ARMATURE": "an armature",
            "GPENCIL": "a grease pencil object", "GREASEPENCIL": "a grease pencil object",
            "CURVES": "a hair curves object", "POINTCLOUD": "a point cloud object",
            "VOLUME": "a volume", "LATTICE": "a lattice"}.get(obj.type, f"a {obj.type.lower()} object")
    hint = " (Object > Convert > Mesh makes it one)" if obj.type in ("FONT", "CURVE", "SURFACE", "META") else ""
    return f"'{obj.name}' is {kind}, not a mesh{hint}"


def selected_meshes(context, count=None, action="this action"):
    """The selected mesh objects, the active one last; raises SelectionError when they do not fit.

    count: the exact number needed (None: one or more).
    """
    selected = list(context.selected_objects)
    active = context.active_object
    if active is not None and active in selected:
        selected.remove(active)
        selected.append(active)
    if not selected:
        raise SelectionError(f"Nothing is selected: select a mesh for {action}")
    for obj in selected:
        if obj.type != "MESH":
            raise SelectionError(describe_non_mesh(obj))
    if count is not None and len(selected) != count:
        raise SelectionError(f"{action} needs exactly {count} selected mesh objects, "
                             f"{len(selected)} {'is' if len(selected) == 1 else 'are'} selected")
    return selected


def matrix_array(matrix):
    """A mathutils.Matrix as float64 [4, 4]."""
    return np.array(matrix, dtype=np.float64)


def read_evaluated_mesh(obj, depsgraph):
    """The mesh as the artist sees it (modifiers applied), in world space.

    Returns (vertices float64 [V, 3], triangles int32 [F, 3], matrix_world float64 [4, 4]): world
    coordinates in float64, so that an object far from the origin keeps its shape;
    raises SelectionError for an object that is not a mesh or has no vertices.
    """
    if obj.type != "MESH":
        raise SelectionError(describe_non_mesh(obj))
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        _check_budget(obj.name, len(mesh.vertices), "vertices", op_schema.MAX_VERTICES)
        mesh.calc_loop_triangles()
        _check_budget(obj.name, len(mesh.loop_triangles), "triangles", op_schema.MAX_TRIANGLES)
        local = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", local)
        triangles = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int32)
        mesh.loop_triangles.foreach_get("vertices", triangles)
    finally:
        evaluated.to_mesh_clear()
    if len(local) == 0:
        raise SelectionError(f"'{obj.name}' is an empty mesh: it has no vertices")
    matrix = matrix_array(obj.matrix_world)
    return transform(local.reshape(-1, 3), matrix), triangles.reshape(-1, 3), matrix


def read_vertices(obj, selected_only=False):
    """The object's own mesh vertices (no modifiers) in world space, float64 [V, 3], and, with
    `selected_only`, their selection bool [V] (read from Edit Mode's current state)."""
    if obj.mode == "EDIT":
        obj.update_from_editmode()
    mesh = obj.data
    _check_budget(obj.name, len(mesh.vertices), "vertices", op_schema.MAX_VERTICES)
    local = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", local)
    vertices = transform(local.reshape(-1, 3), matrix_array(obj.matrix_world))
    if not selected_only:
        return vertices
    selection = np.empty(len(mesh.vertices), dtype=bool)
    mesh.vertices.foreach_get("select", selection)
    return vertices, selection


def results_collection(scene):
    """The "LION Results" collection of `scene`, made (and linked) on first use."""
    collection = bpy.data.collections.get(RESULTS_COLLECTION)
    if collection is None:
        collection = bpy.data.collections.new(RESULTS_COLLECTION)
    if scene.collection.children.get(collection.name) is None and not _in_tree(scene.collection, collection):
        scene.collection.children.link(collection)
    return collection


def _in_tree(parent, collection):
    return any(child == collection or _in_tree(child, collection) for child in parent.children)


def points_node_group():
    """The shared Geometry Nodes group that shows a vertex-only mesh as points of a given radius."""
    group = bpy.data.node_groups.get(POINTS_NODE_GROUP)
    if group is not None:
        return group
    group = bpy.data.node_groups.new(POINTS_NODE_GROUP, "GeometryNodeTree")
    group.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    radius = group.interface.new_socket("Radius", in_out="INPUT", socket_type="NodeSocketFloat")
    radius.default_value, radius.min_value = 0.01, 0.0
    # Points carry no material slots of their own: the modifier says which material they show.
    group.interface.new_socket("Material", in_out="INPUT", socket_type="NodeSocketMaterial")
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes = group.nodes
    group_in, group_out = nodes.new("NodeGroupInput"), nodes.new("NodeGroupOutput")
    to_points, set_material = nodes.new("GeometryNodeMeshToPoints"), nodes.new("GeometryNodeSetMaterial")
    for node, x in ((group_in, -400), (to_points, -150), (set_material, 100), (group_out, 350)):
        node.location = (x, 0)
    group.links.new(group_in.outputs["Geometry"], to_points.inputs["Mesh"])
    group.links.new(group_in.outputs["Radius"], to_points.inputs["Radius"])
    group.links.new(to_points.outputs["Points"], set_material.inputs["Geometry"])
    group.links.new(group_in.outputs["Material"], set_material.inputs["Material"])
    group.links.new(set_material.outputs["Geometry"], group_out.inputs["Geometry"])
    return group


def new_points_mesh(name, points):
    """A vertex-only mesh datablock with `points` float [N, 3] as its vertices."""
    points = np.ascontiguousarray(points, dtype=np.float32).reshape(-1, 3)
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(points))
    mesh.vertices.foreach_set("co", points.ravel())
    mesh.update()
    return mesh


def new_polygon_mesh(name, vertices, faces, smooth=True):
    """A mesh datablock from vertices float [V, 3] and faces int [F, k] (triangles or quads)."""
    vertices = np.ascontiguousarray(vertices, dtype=np.float32).reshape(-1, 3)
    faces = np.ascontiguousarray(faces, dtype=np.int32)
    if faces.ndim != 2 or faces.shape[1] < 3:
        raise ValueError(f"faces must have shape [F, k] with k >= 3, got {faces.shape}")
    # Checked here rather than by Mesh.validate(), which costs more than building the mesh.
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(f"faces must index the {len(vertices)} vertices, got indices {faces.min()}..{faces.max()}")
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", vertices.ravel())
    mesh.loops.add(faces.size)
    mesh.loops.foreach_set("vertex_index", faces.ravel())
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, faces.shape[1], dtype=np.int32))
    mesh.update(calc_edges=True)
    if smooth:
        mesh.shade_smooth()
    return mesh


def add_object(name, mesh, collection, matrix_world, properties):
    """Link a new object for `mesh` into `collection` at `matrix_world` with custom `properties`."""
    obj = bpy.data.objects.new(name, mesh)
    collection.objects.link(obj)
    obj.matrix_world = matrix_world
    for key, value in properties.items():
        obj[key] = value
    return obj


def show_as_points(obj, radius):
    """Display a vertex-only mesh object as points through the "Mesh to Points" modifier."""
    modifier = obj.modifiers.new(POINTS_MODIFIER, "NODES")
    group = points_node_group()
    modifier.node_group = group
    modifier[group.interface.items_tree["Radius"].identifier] = float(radius)
    return modifier


def set_points_material(obj, material):
    """Show the points of a LION point result with `material` (a bpy.types.Material)."""
    modifier = obj.modifiers[POINTS_MODIFIER]
    modifier[modifier.node_group.interface.items_tree["Material"].identifier] = material


