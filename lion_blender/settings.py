"""The actions' settings: one definition each, shared by the operators and the scene's panel
settings (`scene.lion`), so the panel shows exactly what the operators take."""
import bpy

from . import session
from .wire import property_bounds

DEFAULT_MODEL = "DEFAULT"


def count_property():
    return bpy.props.IntProperty(name="Count", description="How many shapes to make",
                                 soft_max=16, **property_bounds("variations", "count"))


def seed_property():
    return bpy.props.IntProperty(name="Seed", description="Random seed: the same seed gives the same shapes",
                                 default=0, min=0)  # Blender's integers stop at 2^31 - 1, below the schema's


def steps_property():
    return bpy.props.IntProperty(name="Steps", description="Denoising steps (DDIM): more is slower and finer",
                                 soft_max=100, **property_bounds("variations", "steps"))


def similarity_property():
    return bpy.props.FloatProperty(
        name="Similarity", description="How close to the input the new shapes stay: 1 keeps it, 0 only its kind",
        subtype="FACTOR", **property_bounds("variations", "similarity"))


def output_property():
    return bpy.props.EnumProperty(
        name="Output", description="What the results are made of",
        items=[("POINTS", "Points", "Point clouds (vertex-only meshes shown as points)"),
               ("MESH", "Mesh", "Watertight meshes reconstructed from the points (slower)")],
        default="POINTS")


def frames_property():
    return bpy.props.IntProperty(name="Frames", description="Shapes along the interpolation, ends included",
                                 soft_max=32, **property_bounds("interpolate", "frames"))


def voxel_resolution_property():
    return bpy.props.IntProperty(name="Voxels", description="Voxels along the guide's longest side",
                                 soft_max=48, **property_bounds("guide", "resolution"))


def mesh_resolution_property():
    return bpy.props.IntProperty(name="Resolution", description="Grid of the mesh reconstruction: finer is slower",
                                 **property_bounds("reconstruct", "resolution"))


def mesh_smoothing_property():
    return bpy.props.FloatProperty(name="Smoothing", description="Smoothing of the mesh reconstruction: higher gives "
                                   "smoother surfaces and joins thin parts, lower keeps finer detail",
                                   **property_bounds("reconstruct", "smoothing"))


def size_property():
    return bpy.props.FloatProperty(name="Size", description="Half the longest side of each new shape",
                                   soft_max=10.0, subtype="DISTANCE", **property_bounds("sample", "size"))


ANY_CATEGORY = "any"


def category_property():
    return bpy.props.StringProperty(
        name="Category", description="What kind of shape to generate: one of the model's categories, or 'any'",
        default=ANY_CATEGORY)


def guidance_property():
    return bpy.props.FloatProperty(
        name="Guidance", description="How strictly shapes follow the category: 1 is plain, higher is more typical",
        soft_max=6.0, **property_bounds("sample", "guidance"))


def model_property():
    return bpy.props.StringProperty(name="Model", description="Model name (empty: the backend's first model)",
                                    default="")


# Cached so the strings outlive the callback: Blender keeps pointers to them.
_model_items = []


def model_items(self, context):
    """The models the backend reported in its hello, and "Default" (its first)."""
    client = session.current_client()
    models = (client.hello or {}).get("models", []) if client is not None else []
    items = [(DEFAULT_MODEL, "Default", "The backend's first model")]
    items += [(m["name"], m["name"], m.get("path", "")) for m in models]
    _model_items[:] = items
    return _model_items


def model_categories(settings, client):
    """The categories of the model `settings` chooses, as the backend's hello reported them
    (empty for an unconditional model, or before the backend answered)."""
    models = (client.hello or {}).get("models", []) if client is not None else []
    chosen = settings.model
    for record in models:
        if record["name"] == chosen or not chosen:
            return list(record.get("categories") or [])
    return []


_category_items = []


def category_items(self, context):
    """"Any" and the chosen model's categories."""
    items = [(ANY_CATEGORY, "Any", "Any of the model's categories (each as often as in its training data, where the model records that)")]
    items += [(name, name.capitalize(), f"Generate a {name}") for name in model_categories(self, session.current_client())]
    _category_items[:] = items
    return _category_items


class LION_PG_settings(bpy.types.PropertyGroup):
    model_choice: bpy.props.EnumProperty(name="Model", description="Which LION model generates",
                                         items=model_items)
    count: count_property()
    seed: seed_property()
    steps: steps_property()
    similarity: similarity_property()
    output: output_property()
    frames: frames_property()
    voxel_resolution: voxel_resolution_property()
    mesh_resolution: mesh_resolution_property()
    mesh_smoothing: mesh_smoothing_property()
    size: size_property()
    category_choice: bpy.props.EnumProperty(name="Category", description="What kind of shape to generate",
                                            items=category_items)
    guidance: guidance_property()

    @property
    def category(self):
        """The chosen category name, or "any"."""
        return self.category_choice or ANY_CATEGORY

    @property
    def model(self):
        """The chosen model's name, or "" for the backend's default."""
        return "" if self.model_choice in (DEFAULT_MODEL, "") else self.model_choice


def register():
    bpy.utils.register_class(LION_PG_settings)
    bpy.types.Scene.lion = bpy.props.PointerProperty(type=LION_PG_settings)


def unregister():
    del bpy.types.Scene.lion
    bpy.utils.unregister_class(LION_PG_settings)
