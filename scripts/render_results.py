"""Render a source mesh and LION's variations of it to PNG with Cycles on the CPU.

Run with Blender's Python (.venv-blender), from the repository root:

    .venv-blender/bin/python scripts/render_results.py --zip dist/lion_blender-0.1.0.zip \\
        --backend-python .venv/bin/python --model-folder MODELS --out renders/

It installs the built extension into a throwaway Blender user folder, builds a scene with the
source (a primitive, or a mesh file), runs the add-on's own Generate Variations operator, and
writes overview.png (source and results side by side), source.png and result_<k>.png.
"""
import argparse
import contextlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blender_harness  # noqa: E402  (must precede any bpy import)

PRIMITIVES = ("monkey", "torus", "uv_sphere", "cube", "cone", "cylinder")
IMPORTERS = {".obj": "obj_import", ".ply": "ply_import", ".stl": "stl_import"}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zip", required=True, help="the built extension zip")
    parser.add_argument("--backend-python", required=True, help="python of the backend environment")
    parser.add_argument("--model-folder", default="", help="folder with the model(s) to use")
    parser.add_argument("--out", required=True, help="folder for the PNGs")
    parser.add_argument("--source", default="monkey", help=f"a primitive ({', '.join(PRIMITIVES)}) or a mesh "
                                                            f"file ({', '.join(IMPORTERS)})")
    parser.add_argument("--count", type=int, default=3, help="variations to make")
    parser.add_argument("--similarity", type=float, default=0.8, help="0..1, as in the panel")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", choices=("points", "mesh"), default="points")
    parser.add_argument("--size", type=int, default=320, help="image height in pixels")
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel")
    return parser.parse_args()


def add_source(bpy, source):
    extension = os.path.splitext(source)[1].lower()
    if extension in IMPORTERS:
        getattr(bpy.ops.wm, IMPORTERS[extension])(filepath=os.path.abspath(source))
        obj = bpy.context.selected_objects[0]
    elif source in PRIMITIVES:
        getattr(bpy.ops.mesh, f"primitive_{source}_add")()
        obj = bpy.context.active_object
        obj.data.shade_smooth()
    else:
        sys.exit(f"--source must be one of {', '.join(PRIMITIVES)} or a {'/'.join(IMPORTERS)} file, got {source!r}")
    bpy.ops.object.select_all(action="DESELECT")
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    return obj


def material(bpy, name, color):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    shader = mat.node_tree.nodes["Principled BSDF"]
    shader.inputs["Base Color"].default_value = (*color, 1.0)
    shader.inputs["Roughness"].default_value = 0.5
    return mat


def setup_render(bpy, size, samples):
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.render.resolution_y = size
    scene.render.film_transparent = False
    world = bpy.data.worlds.new("LION render") if scene.world is None else scene.world
    scene.world = world
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.8, 0.82, 0.85, 1.0)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.6
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.data.energy = 3.0
    sun.rotation_euler = (0.7, 0.2, 0.8)
    scene.collection.objects.link(sun)
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    camera.data.type = "ORTHO"
    scene.collection.objects.link(camera)
    scene.camera = camera
    return camera


def shown_bounds(objects):
    """Low and high world corners of the objects' vertices, over all their shape keys (points
    objects have no evaluated bounding box: their points come from a modifier)."""
    import numpy as np

    corners = []
    for obj in objects:
        shape_keys = obj.data.shape_keys
        coordinate_sets = [key.data for key in shape_keys.key_blocks] if shape_keys else [obj.data.vertices]
        matrix = np.array(obj.matrix_world)
        for items in coordinate_sets:
            local = np.empty(len(items) * 3, dtype=np.float32)
            items.foreach_get("co", local)
            corners.append(local.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3])
    corners = np.concatenate(corners)
    return corners.min(axis=0), corners.max(axis=0)


def render(bpy, camera, objects, path, size=None):
    """Render `objects` alone to `path`, framed from the front and above. `size` None keeps the
    scene's image height and widens the image to fit a row of objects; a number renders a
    square size x size tile."""
    from mathutils import Vector

    shown = set(objects)
    for obj in bpy.context.scene.objects:
        if obj.type == "MESH":
            obj.hide_render = obj not in shown
    low, high = shown_bounds(objects)
    center, extent = (low + high) / 2, high - low
    render_settings = bpy.context.scene.render
    if size is None:
        render_settings.resolution_x = int(render_settings.resolution_y
                                           * max(1.0, min(4.0, extent[0] / max(extent[2], 1e-6))))
        direction = Vector((0.0, -1.0, 0.45)).normalized()
        aspect = render_settings.resolution_x / render_settings.resolution_y
        camera.data.ortho_scale = float(max(extent[0], extent[2] * aspect) * 1.15)
    else:
        render_settings.resolution_x = render_settings.resolution_y = size
        direction = Vector((0.35, -1.0, 0.5)).normalized()
        camera.data.ortho_scale = float(extent.max() * 1.25)
    camera.location = Vector(center) + direction * float(extent.max() * 4 + 1)
    camera.rotation_euler = (-direction).to_track_quat("-Z", "Y").to_euler()
    camera.data.clip_end = float(extent.max() * 10 + 10)
    render_settings.filepath = path
    with quiet_stdout():
        bpy.ops.render.render(write_still=True)
    print(f"Written: {path}")


@contextlib.contextmanager
def quiet_stdout():
    """Silence Blender's per-sample render log (written by C code straight to fd 1)."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def compose_sheet(bpy, rows, path, size):
    """One PNG of square tiles: `rows` is a list of rows of tile PNG paths (None: blank)."""
    import numpy as np

    columns = max(len(row) for row in rows)
    sheet = np.ones((len(rows) * size, columns * size, 4), dtype=np.float32)
    for r, row in enumerate(rows):
        for c, tile_path in enumerate(row):
            if tile_path is None:
                continue
            image = bpy.data.images.load(tile_path)
            pixels = np.empty(size * size * 4, dtype=np.float32)
            image.pixels.foreach_get(pixels)
            bpy.data.images.remove(image)
            top = (len(rows) - 1 - r) * size  # Blender's pixel rows start at the bottom
            sheet[top:top + size, c * size:(c + 1) * size] = pixels.reshape(size, size, 4)
    image = bpy.data.images.new("contact sheet", columns * size, len(rows) * size, alpha=True)
    image.pixels.foreach_set(sheet.ravel())
    image.filepath_raw, image.file_format = path, "PNG"
    image.save()
    bpy.data.images.remove(image)


def main():
    args = parse_args()
    blender_harness.use_throwaway_user_folder()
    import bpy

    addon = blender_harness.install_extension(os.path.abspath(args.zip), os.path.abspath(args.backend_python))
    prefs = blender_harness.addon_preferences()
    prefs.model_folder = os.path.abspath(args.model_folder) if args.model_folder else ""
    bpy.ops.wm.read_homefile(use_empty=True)
    os.makedirs(args.out, exist_ok=True)
    try:
        source = add_source(bpy, args.source)
        source.data.materials.append(material(bpy, "Source", (0.55, 0.55, 0.58)))
        result = bpy.ops.lion.variations(count=args.count, similarity=args.similarity, steps=args.steps,
                                         seed=args.seed, output=args.output.upper())
        if result != {"FINISHED"}:
            sys.exit("Generate Variations did not finish")
        results = sorted(bpy.data.collections["LION Results"].objects, key=lambda o: o.name)
        result_material = material(bpy, "LION result", (0.9, 0.45, 0.15))
        for obj in results:
            if addon.mesh_io.POINTS_MODIFIER in obj.modifiers:
                addon.mesh_io.set_points_material(obj, result_material)
            else:
                obj.data.materials.append(result_material)
        camera = setup_render(bpy, args.size, args.samples)
        render(bpy, camera, [source, *results], os.path.join(os.path.abspath(args.out), "overview.png"))
        render(bpy, camera, [source], os.path.join(os.path.abspath(args.out), "source.png"))
        for index, obj in enumerate(results):
            render(bpy, camera, [obj], os.path.join(os.path.abspath(args.out), f"result_{index}.png"))
    finally:
        addon.session.shutdown()


if __name__ == "__main__":
    main()
