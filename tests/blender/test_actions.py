"""Every LION action in real Blender against the real backend (untrained tiny test model):
what lands in the scene, where, with which properties, and that one undo removes it."""
import math

import bpy
import numpy as np
import pytest
from mathutils import Euler, Matrix
from conftest import TEST_CATEGORIES, TEST_MODEL, TINY_POINTS

FAST = {"steps": 2, "seed": 3}


def results(scene):
    collection = bpy.data.collections.get("LION Results")
    return sorted(collection.objects, key=lambda o: o.name) if collection else []


def world_vertices(obj):
    local = np.empty(len(obj.data.vertices) * 3, dtype=np.float32)
    obj.data.vertices.foreach_get("co", local)
    matrix = np.array(obj.matrix_world)
    return local.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3]


def add_mesh(kind="cube", location=(0, 0, 0), rotation=(0, 0, 0), scale=(1, 1, 1)):
    getattr(bpy.ops.mesh, f"primitive_{kind}_add")(location=location, rotation=rotation, scale=scale)
    return bpy.context.active_object


def select(*objects):
    bpy.ops.object.select_all(action="DESELECT")
    for obj in objects:
        obj.select_set(True)
    bpy.context.view_layer.objects.active = objects[-1] if objects else None


def assert_points_object(obj):
    assert obj.type == "MESH" and len(obj.data.vertices) == TINY_POINTS and len(obj.data.polygons) == 0
    modifier = obj.modifiers["Mesh to Points"]
    assert modifier.type == "NODES" and any(n.type == "MESH_TO_POINTS" for n in modifier.node_group.nodes)


def test_generate_lays_out_points_at_the_cursor(scene):
    scene.cursor.location = (1.0, 2.0, 3.0)
    assert bpy.ops.lion.generate(count=2, size=0.5, **FAST) == {"FINISHED"}
    created = results(scene)
    assert [o.name for o in created] == ["LION Sample 1", "LION Sample 2"]
    for index, obj in enumerate(created):
        assert_points_object(obj)
        assert dict(obj.items()) == {"op": "sample", "seed": 3, "steps": 2, "model": TEST_MODEL, "category": "any"}
        assert np.allclose(obj.matrix_world.translation, (1.0 + 1.25 * index, 2.0, 3.0))
        assert np.isfinite(world_vertices(obj)).all()
    assert not np.allclose(world_vertices(created[0]) - created[0].matrix_world.translation,
                           world_vertices(created[1]) - created[1].matrix_world.translation)
    assert set(bpy.context.selected_objects) == set(created)


def test_generate_by_category_records_it_and_reaches_the_model(scene):
    assert bpy.ops.lion.generate(count=1, category="chair", guidance=3.0, **FAST) == {"FINISHED"}
    assert bpy.ops.lion.generate(count=1, **FAST) == {"FINISHED"}
    chair, anything = results(scene)
    assert chair["category"] == "chair" and anything["category"] == "any"
    assert not np.allclose(world_vertices(chair), world_vertices(anything))


def test_variations_land_beside_the_source_in_its_frame(scene):
    source = add_mesh("cube", location=(2.0, -1.0, 0.5), rotation=(0.0, 0.0, math.radians(30)), scale=(1, 2, 1))
    source.modifiers.new("bevel", "BEVEL")  # the evaluated mesh, modifiers applied, is what is sent
    select(source)
    assert bpy.ops.lion.variations(count=3, similarity=0.8, **FAST) == {"FINISHED"}
    created = results(scene)
    assert len(created) == 3 and source.name not in [o.name for o in created]
    source_matrix = np.array(source.matrix_world)
    width = np.ptp((evaluated_vertices(source) @ source_matrix[:3, :3].T)[:, 0])
    for index, obj in enumerate(created):
        assert_points_object(obj)
        properties = dict(obj.items())
        assert properties.pop("category") in TEST_CATEGORIES, "the source's category, as the model infers it"
        assert properties == {"op": "variations", "seed": 3, "steps": 2, "model": TEST_MODEL, "tau": 200,
                              "source": source.name}
        matrix = np.array(obj.matrix_world)
        assert np.allclose(matrix[:3, :3], source_matrix[:3, :3], atol=1e-6), "results keep the source's frame"
        assert np.allclose(matrix[:3, 3] - source_matrix[:3, 3], [width * 1.25 * (index + 1), 0, 0], atol=1e-5)


def test_variations_as_meshes_are_smooth_real_meshes(scene):
    select(add_mesh("uv_sphere"))
    assert bpy.ops.lion.variations(count=1, output="MESH", **FAST) == {"FINISHED"}
    (mesh,) = results(scene)
    assert len(mesh.data.polygons) > 0 and not mesh.modifiers
    smooth = np.empty(len(mesh.data.polygons), dtype=bool)
    mesh.data.polygons.foreach_get("use_smooth", smooth)
    assert smooth.all()


def local_vertices(obj):
    local = np.empty(len(obj.data.vertices) * 3, dtype=np.float32)
    obj.data.vertices.foreach_get("co", local)
    return local.reshape(-1, 3)


def test_a_mesh_far_from_the_origin_gets_the_same_variations(scene):
    """World coordinates go to the backend and back in float64: at x = 1e8 float32's spacing is
    8, so a unit cube read or returned in float32 came back flat."""
    made = []
    for location in ((0.0, 0.0, 0.0), (1e8, -2e7, 0.0)):
        source = add_mesh("cube", location=location)
        select(source)
        assert bpy.ops.lion.variations(count=1, similarity=0.9, **FAST) == {"FINISHED"}
        (result,) = [obj for obj in results(scene) if obj.name not in {o.name for o in made}]
        made.append(result)
    near, far = (local_vertices(obj) for obj in made)
    assert np.ptp(far, axis=0).min() > 0.5, "the far result kept its size"
    np.testing.assert_allclose(far, near, atol=1e-3)


def test_several_selected_meshes_each_get_their_variations(scene):
    first, second = add_mesh("cube"), add_mesh("cone", location=(0, 5, 0))
    select(first, second)
    assert bpy.ops.lion.variations(count=1, **FAST) == {"FINISHED"}
    assert sorted(o["source"] for o in results(scene)) == sorted([first.name, second.name])


def test_one_undo_step_removes_the_whole_action(scene):
    source = add_mesh("cube")
    select(source)
    window = bpy.context.window_manager.windows[0]
    with bpy.context.temp_override(window=window):
        bpy.ops.ed.undo_push(message="before LION")
        names_before = sorted(o.name for o in bpy.data.objects)
        # undo=True: pushed to the undo stack as a click in the interface would be
        assert bpy.ops.lion.variations("EXEC_DEFAULT", True, count=2, **FAST) == {"FINISHED"}
        assert len(bpy.data.objects) == len(names_before) + 2
        bpy.ops.ed.undo()
        assert sorted(o.name for o in bpy.data.objects) == names_before
        bpy.ops.ed.redo()
        assert len(bpy.data.collections["LION Results"].objects) == 2


def test_interpolation_is_one_object_with_a_shape_key_per_frame_and_a_slider(scene):
    first, second = add_mesh("cube"), add_mesh("uv_sphere", location=(4, 0, 0))
    select(first, second)
    assert bpy.ops.lion.interpolate(frames=3, **FAST) == {"FINISHED"}
    (morph,) = results(scene)
    assert_points_object(morph)
    assert morph["op"] == "interpolate" and morph["frames"] == 3
    assert (morph["source"], morph["target"]) == (first.name, second.name)
    keys = morph.data.shape_keys.key_blocks
    assert [k.name for k in keys] == ["Frame 1", "Frame 2", "Frame 3"]
    assert all(d.driver.is_simple_expression for d in morph.data.shape_keys.animation_data.drivers), \
        "drivers run without Python, so files open with auto-run off"
    frames = [key_coordinates(key) for key in keys]
    morph.modifiers["Mesh to Points"].show_viewport = False  # points are no mesh: read the blended vertices
    for blend, expected in ((0.0, frames[0]), (0.5, frames[1]), (1.0, frames[2]),
                            (0.25, (frames[0] + frames[1]) / 2)):
        morph["lion_blend"] = blend
        assert np.allclose(evaluated_vertices(morph), expected, atol=1e-3 * np.abs(expected).max())

    scene.frame_start, scene.frame_end = 10, 40
    assert bpy.ops.lion.bake_interpolation() == {"FINISHED"}
    (curve,) = fcurves_of(morph)
    assert [tuple(p.co) for p in curve.keyframe_points] == [(10.0, 0.0), (40.0, 1.0)]
    assert {p.interpolation for p in curve.keyframe_points} == {"LINEAR"}
    scene.frame_set(25)
    assert morph["lion_blend"] == pytest.approx(0.5)


def fcurves_of(obj):
    """The object's F-curves read through Blender's own helper for layered actions (4.4 on),
    else the action's list: independent of the add-on's lookup."""
    from bpy_extras import anim_utils

    data = obj.animation_data
    if hasattr(anim_utils, "action_get_channelbag_for_slot"):
        bag = anim_utils.action_get_channelbag_for_slot(data.action, data.action_slot)
        return list(bag.fcurves) if bag is not None else []
    return list(data.action.fcurves)


def key_coordinates(key):
    coordinates = np.empty(len(key.data) * 3, dtype=np.float32)
    key.data.foreach_get("co", coordinates)
    return coordinates.reshape(-1, 3)


def evaluated_vertices(obj):
    obj.update_tag()
    depsgraph = bpy.context.evaluated_depsgraph_get()
    depsgraph.update()
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        coordinates = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", coordinates)
    finally:
        evaluated.to_mesh_clear()
    return coordinates.reshape(-1, 3)


def test_voxel_guide_then_shapes_from_it(scene):
    sphere = add_mesh("uv_sphere", location=(0, 0, 1))
    sphere.scale = (2, 2, 2)
    select(sphere)
    assert bpy.ops.lion.make_voxel_guide(resolution=6) == {"FINISHED"}
    (guide,) = results(scene)
    assert guide["op"] == "voxel_guide" and guide["lion_voxel_resolution"] == 6
    assert guide["lion_voxel_size"] == pytest.approx(2.0 / 6, rel=1e-3), "local units: the sphere's radius is 1"
    corners = np.array([list(p.vertices) for p in guide.data.polygons])
    assert corners.shape[1] == 4, "a blocky guide is made of quads"
    guide_points = world_vertices(guide)
    assert np.ptp(guide_points, axis=0) == pytest.approx([4.0, 4.0, 4.0], rel=0.02)
    assert guide_points[:, 0].min() > world_vertices(sphere)[:, 0].max(), "the guide stands beside its source"

    select(guide)
    assert bpy.ops.lion.voxel_guided(count=2, similarity=0.5, **FAST) == {"FINISHED"}
    shapes = [o for o in results(scene) if o.get("op") == "voxel_guided"]
    assert len(shapes) == 2
    for obj in shapes:
        assert_points_object(obj)
        assert obj["tau"] == 500 and obj["source"] == guide.name
        assert obj.matrix_world.translation.x > guide.matrix_world.translation.x


def test_reconstruct_turns_a_point_result_into_a_mesh_beside_it(scene):
    bpy.ops.lion.generate(count=1, **FAST)
    (points,) = results(scene)
    select(points)
    assert bpy.ops.lion.reconstruct(resolution=32) == {"FINISHED"}
    mesh = bpy.data.objects[f"{points.name} mesh"]
    assert len(mesh.data.polygons) > 0 and mesh["op"] == "reconstruct" and mesh["source"] == points.name
    offset = np.array(mesh.matrix_world.translation - points.matrix_world.translation)
    assert offset[0] > 0 and np.allclose(offset[1:], 0)
    mesh_world, points_world = world_vertices(mesh), world_vertices(points)
    extent = np.ptp(points_world, axis=0).max()
    # The mesh, moved back by the offset, wraps the bulk of the points (an untrained model's cloud
    # may have stray points that the reconstruction rightly leaves out, so not its bounding box).
    core = np.median(points_world, axis=0)
    low, high = mesh_world.min(axis=0) - offset, mesh_world.max(axis=0) - offset
    assert np.all(low - 0.05 * extent <= core) and np.all(core <= high + 0.05 * extent), "the mesh wraps the points"
    assert np.ptp(mesh_world, axis=0).max() > 0.2 * extent, "the mesh is of the points' size, not a speck"


def test_the_backend_sees_blender_up_as_the_models_up(lion):
    """LION models are Y-up, Blender is Z-up: an object's local up must reach the backend as
    the model's +Y, whatever the object's own rotation, and its front (-Y) as the model's +Z."""
    world = np.array(Matrix.LocRotScale((1.0, 2.0, 3.0), Euler((0.3, -0.2, 1.1)), (2.0, 2.0, 2.0)))
    sent = lion.actions.model_frame(world)
    model_from_world = np.linalg.inv(sent)
    local_up, local_front = world @ (0, 0, 1, 0), world @ (0, -1, 0, 0)
    assert np.allclose(model_from_world @ local_up, (0, 1, 0, 0))
    assert np.allclose(model_from_world @ local_front, (0, 0, 1, 0))
    assert np.isclose(np.linalg.det(sent[:3, :3]), np.linalg.det(world[:3, :3]))  # a rotation, no mirror
