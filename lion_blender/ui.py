"""The "LION" tab in the 3D View's sidebar: backend status, model, actions, progress and Cancel."""
import bpy

from . import actions, jobs, session
from . import settings as settings_module

SHARED = ("seed", "steps", "model")


def action_button(layout, idname, text, icon, scene_settings, names):
    """An operator button whose properties come from the scene's LION settings.

    names: operator property -> scene settings attribute.
    """
    operator = layout.operator(idname, text=text, icon=icon)
    for operator_name, settings_name in names.items():
        setattr(operator, operator_name, getattr(scene_settings, settings_name))
    return operator


def draw_settings(layout, settings, *names):
    column = layout.column(align=True)
    for name in names:
        column.prop(settings, name)


def _names(*own, **renamed):
    return {**{name: name for name in own + SHARED}, **renamed}


class LION_PT_backend(bpy.types.Panel):
    bl_label = "LION"
    bl_idname = "LION_PT_backend"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "LION"

    def draw(self, context):
        layout = self.layout
        client = session.current_client()
        state = client.state if client else "stopped"
        icon = {"ready": "CHECKMARK", "starting": "SORTTIME", "failed": "ERROR"}.get(state, "RADIOBUT_OFF")
        layout.label(text=session.status_text(client), icon=icon)
        row = layout.row(align=True)
        if state in ("ready", "starting"):
            row.operator("lion.backend_connect", text="Restart", icon="FILE_REFRESH").restart = True
            row.operator("lion.backend_stop", text="Stop", icon="CANCEL")
        else:
            row.operator("lion.backend_connect", text="Start Backend", icon="PLAY").restart = False
        layout.prop(context.scene.lion, "model_choice")
        job = jobs.current()
        if job is not None and job.running:
            fraction, text = job.progress()
            row = layout.row(align=True)
            row.progress(factor=fraction, type="BAR", text=text)
            row.operator("lion.cancel_job", text="", icon="CANCEL")
        elif job is not None and job.message:
            icon = {jobs.FINISHED: "INFO", jobs.CANCELLED: "CANCEL"}.get(job.state, "ERROR")
            layout.label(text=job.message.splitlines()[0], icon=icon)


class ActionPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "LION"
    bl_parent_id = "LION_PT_backend"


class LION_PT_generate(ActionPanel, bpy.types.Panel):
    bl_label = "Generate"
    bl_idname = "LION_PT_generate"

    def draw(self, context):
        settings = context.scene.lion
        draw_settings(self.layout, settings, "count", "seed", "steps", "output")
        self.layout.prop(settings, "size")
        categorized = bool(settings_module.model_categories(settings, session.current_client()))
        if categorized:  # a model without categories shows no menu
            row = self.layout.row(align=True)
            row.prop(settings, "category_choice", text="")
            row.prop(settings, "guidance")
        column = self.layout.column()
        column.enabled = not jobs.is_running()
        action_button(column, "lion.generate", "Generate", "OUTLINER_OB_POINTCLOUD", settings,
                      _names("count", "output", "size", *(("category", "guidance") if categorized else ())))
        column.separator()
        column.prop(settings, "similarity")
        action_button(column, "lion.variations", "Generate Variations", "DUPLICATE", settings,
                      _names("count", "output", "similarity"))


class LION_PT_interpolate(ActionPanel, bpy.types.Panel):
    bl_label = "Interpolate"
    bl_idname = "LION_PT_interpolate"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        settings = context.scene.lion
        layout = self.layout
        layout.prop(settings, "frames")
        column = layout.column()
        column.enabled = not jobs.is_running()
        action_button(column, "lion.interpolate", "Interpolate Two Selected", "IPO_EASE_IN_OUT", settings,
                      _names("frames"))
        obj = context.active_object
        if obj is not None and actions.BLEND_PROPERTY in obj:
            layout.prop(obj, f'["{actions.BLEND_PROPERTY}"]', text="Blend", slider=True)
            layout.operator("lion.bake_interpolation", icon="KEYFRAME")


class LION_PT_voxel_guide(ActionPanel, bpy.types.Panel):
    bl_label = "Voxel Guide"
    bl_idname = "LION_PT_voxel_guide"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        settings = context.scene.lion
        layout = self.layout
        layout.prop(settings, "voxel_resolution")
        layout.operator("lion.make_voxel_guide", icon="MESH_CUBE").resolution = settings.voxel_resolution
        column = layout.column()
        column.enabled = not jobs.is_running()
        action_button(column, "lion.voxel_guided", "Generate from Guide", "MOD_REMESH", settings,
                      _names("count", "output", "similarity", resolution="voxel_resolution"))


class LION_PT_edit(ActionPanel, bpy.types.Panel):
    bl_label = "Edit Results"
    bl_idname = "LION_PT_edit"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        settings = context.scene.lion
        layout = self.layout
        column = layout.column()
        column.enabled = not jobs.is_running()
        column.label(text="Edit Mode: select the points to keep")
        action_button(column, "lion.regenerate_region", "Regenerate Region", "SELECT_SUBTRACT", settings,
                      _names("output"))
        column.separator()
        column.prop(settings, "mesh_resolution")
        column.prop(settings, "mesh_smoothing")
        action_button(column, "lion.reconstruct", "Reconstruct Mesh", "MESH_ICOSPHERE", settings,
                      {"resolution": "mesh_resolution", "smoothing": "mesh_smoothing"})


_classes = (LION_PT_backend, LION_PT_generate, LION_PT_interpolate, LION_PT_voxel_guide, LION_PT_edit)


def register():
    for cls in _classes:
        bpy.utils.register_class(cls)


def unregister():
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
