"""The headless demo, run by `python3 build.py demo` with Blender's Python (.venv-blender).

Installs the built extension into a throwaway Blender user folder, starts the backend through
the add-on's own operator and prints its hello reply; then does the main job an artist does,
with the default model (models/, bundled in the extension) or the one in --model-folder:
Generate Variations of a chair, Interpolate from the chair to a table, Reconstruct Mesh from a
variation, all through the add-on's operators; renders a contact sheet with Cycles (CPU) and
saves the scene. Outputs in --out: hello.json, demo.blend, contact_sheet.png (+ its tiles/),
timings.json.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blender_harness  # noqa: E402  (must precede any bpy import)
import render_results  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--zip", required=True, help="the built extension zip")
    parser.add_argument("--backend-python", required=True, help="python of the backend environment")
    parser.add_argument("--out", required=True, help="folder for the demo's outputs")
    parser.add_argument("--model-folder", default="", help="extra folder with models (default: the bundled ones)")
    parser.add_argument("--count", type=int, default=4, help="variations to make")
    parser.add_argument("--similarity", type=float, default=0.7, help="of the variations, 0..1 as in the panel")
    parser.add_argument("--frames", type=int, default=5, help="interpolation frames")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tile", type=int, default=256, help="contact sheet tile size in pixels")
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel")
    args = parser.parse_args()

    user_folder = blender_harness.use_throwaway_user_folder()
    import bpy

    addon = blender_harness.install_extension(os.path.abspath(args.zip), os.path.abspath(args.backend_python))
    if args.model_folder:
        blender_harness.addon_preferences().model_folder = os.path.abspath(args.model_folder)
    print(f"Installed {os.path.basename(args.zip)} into Blender {bpy.app.version_string} (user folder {user_folder})")
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    try:
        if bpy.ops.lion.backend_connect() != {"FINISHED"}:
            client = addon.session.current_client()
            sys.exit(f"The backend did not answer: {client.last_error if client else 'no client'}")
        hello = addon.session.current_client().hello
        print(addon.session.status_text(addon.session.current_client()))
        print("Backend hello reply, obtained by the installed add-on:")
        print(json.dumps(hello, indent=2))
        with open(os.path.join(out, "hello.json"), "w") as f:
            json.dump(hello, f, indent=2)
        print(f"Written: {os.path.join(out, 'hello.json')}")
        if not hello.get("models"):
            sys.exit("No LION model was found: the default model (models/default.safetensors) is missing "
                     "from this checkout. Make it with: python3 build.py train-default")
        main_job(bpy, addon, args, out)
    finally:
        addon.session.shutdown()


# Demo scene: furniture blocked out of boxes, Z-up, front towards -Y, as an artist models it.
# Each box is (center xyz, half size xyz) in meters.
CHAIR = [((0, 0, 0.45), (0.24, 0.24, 0.03))] + [
    ((x, y, 0.21), (0.02, 0.02, 0.21)) for x in (-0.21, 0.21) for y in (-0.21, 0.21)] + [
    ((0, 0.22, 0.74), (0.24, 0.02, 0.26))]
TABLE = [((0, 0, 0.73), (0.6, 0.38, 0.025))] + [
    ((x, y, 0.35), (0.03, 0.03, 0.35)) for x in (-0.54, 0.54) for y in (-0.32, 0.32)]


def add_boxes(bpy, name, boxes, location):
    """One mesh object made of axis-aligned boxes."""
    import numpy as np

    corners = np.array([(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    vertices, faces = [], []
    for center, half in boxes:
        faces += [tuple(len(vertices) + i for i in quad) for quad in quads]
        vertices += [tuple(v) for v in np.asarray(center) + corners * np.asarray(half)]
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(vertices, [], faces)
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    obj.location = location
    bpy.context.scene.collection.objects.link(obj)
    return obj


def select(bpy, *objects):
    """Select `objects`; the last is the active one (Interpolate's target)."""
    bpy.ops.object.select_all(action="DESELECT")
    for obj in objects:
        obj.select_set(True)
    bpy.context.view_layer.objects.active = objects[-1]


def run_operator(addon, label, operator, **settings):
    started = time.perf_counter()
    if operator(**settings) != {"FINISHED"}:
        sys.exit(f"{label} failed: {addon.jobs.current().message}")
    seconds = time.perf_counter() - started
    print(f"{label}: {addon.jobs.current().message} ({seconds:.1f} s)")
    return seconds


def new_results(bpy, before):
    collection = bpy.data.collections["LION Results"]
    return sorted((o for o in collection.objects if o.name not in before), key=lambda o: o.name)


def main_job(bpy, addon, args, out):
    """Variations of a chair, a chair-to-table morph and a reconstructed mesh, through the
    add-on's operators; saved as demo.blend and rendered as contact_sheet.png."""
    bpy.ops.wm.read_homefile(use_empty=True)
    chair = add_boxes(bpy, "Chair", CHAIR, (0, 0, 0))
    table = add_boxes(bpy, "Table", TABLE, (0, 3, 0))
    gray, orange, blue = (render_results.material(bpy, name, color) for name, color in (
        ("Source", (0.55, 0.55, 0.58)), ("LION points", (0.9, 0.45, 0.15)), ("LION mesh", (0.25, 0.45, 0.8))))
    for obj in (chair, table):
        obj.data.materials.append(gray)
    timings = {}

    select(bpy, chair)
    timings["variations"] = run_operator(addon, f"Generate Variations ({args.count} of the chair)",
                                         bpy.ops.lion.variations, count=args.count, similarity=args.similarity,
                                         steps=args.steps, seed=args.seed)
    variations = new_results(bpy, set())
    select(bpy, chair, table)
    timings["interpolate"] = run_operator(addon, f"Interpolate (chair to table, {args.frames} frames)",
                                          bpy.ops.lion.interpolate, frames=args.frames, steps=args.steps,
                                          seed=args.seed)
    (morph,) = new_results(bpy, {o.name for o in variations})
    select(bpy, variations[0])
    timings["reconstruct"] = run_operator(addon, f"Reconstruct Mesh (of '{variations[0].name}')",
                                          bpy.ops.lion.reconstruct)
    (mesh,) = new_results(bpy, {o.name for o in variations} | {morph.name})
    # Generate, asked for each category the model knows (none for an unconditional model).
    hello = addon.session.current_client().hello or {}
    categories = next((m.get("categories") or [] for m in hello.get("models", [])), [])
    generated, seen = [], {o.name for o in variations} | {morph.name, mesh.name}
    for k, category in enumerate(categories):
        bpy.context.scene.cursor.location = (3.0 * k, -4.0, 0.0)
        timings[f"generate_{category}"] = run_operator(addon, f"Generate (a {category})", bpy.ops.lion.generate,
                                                       count=1, category=category, steps=args.steps, seed=args.seed)
        (made,) = new_results(bpy, seen)
        seen.add(made.name)
        generated.append(made)
    for obj in (*variations, morph, *generated):
        addon.mesh_io.set_points_material(obj, orange)
    mesh.data.materials.append(blue)
    blend = os.path.join(out, "demo.blend")
    bpy.ops.wm.save_as_mainfile(filepath=blend)
    print(f"Written: {blend}")

    camera = render_results.setup_render(bpy, size=args.tile, samples=args.samples)
    tiles = os.path.join(out, "tiles")
    os.makedirs(tiles, exist_ok=True)

    def tile(name, objects):
        path = os.path.join(tiles, f"{name}.png")
        render_results.render(bpy, camera, objects, path, size=args.tile)
        return path

    rows = [[tile("chair", [chair])] + [tile(f"variation_{k + 1}", [obj]) for k, obj in enumerate(variations)]]
    frames = []
    for k in range(args.frames):
        morph[addon.actions.BLEND_PROPERTY] = k / (args.frames - 1)
        frames.append(tile(f"interpolation_{k}", [morph]))
    rows.append(frames)
    rows.append([tile("table", [table]), tile("reconstructed_points", [variations[0]]),
                 tile("reconstructed_mesh", [mesh])])
    if generated:
        rows.append([tile(f"generated_{obj['category']}", [obj]) for obj in generated])
    sheet = os.path.join(out, "contact_sheet.png")
    render_results.compose_sheet(bpy, rows, sheet, args.tile)
    print(f"Written: {sheet}")
    print("  row 1: the chair, then its variations; row 2: the chair-to-table interpolation;")
    print("  row 3: the table, a variation's points and the mesh reconstructed from them")
    if generated:
        print(f"  row 4: Generate asked for each category ({', '.join(categories)})")
    with open(os.path.join(out, "timings.json"), "w") as f:
        json.dump({k: round(v, 2) for k, v in timings.items()}, f, indent=2)


if __name__ == "__main__":
    main()
