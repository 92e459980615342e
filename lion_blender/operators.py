"""Operators: the LION actions, and managing the backend process.

An action operator started from the UI sends its request and returns at once; a modal timer
polls the job (jobs.py), shows progress in the panel and the status bar, and creates the results
when they arrive, as one undo step. Escape or the panel's Cancel stops it. In background mode
(where timers never fire) and from scripts' `execute`, the same job runs to completion before the
operator returns.
"""
import os
import sys

import bpy
from bpy.app.handlers import persistent

from . import actions, jobs, session, settings
from .client import BackendError
from .mesh_io import SelectionError
from .preferences import backend_client

# A cold start imports torch and may compile kernels; give it time before calling it hung.
HELLO_TIMEOUT_S = 300.0
POLL_INTERVAL_S = 0.1


def describe_hello(hello):
    devices = ", ".join(d["name"] for d in hello.get("devices", []))
    models = len(hello.get("models", []))
    return (f"LION backend {hello.get('backend_version')} ready on {hello.get('device')}: "
            f"torch {hello.get('torch')}, devices [{devices}], kernels {hello.get('kernels', {}).get('active')}, "
            f"{models} model(s)" + "".join(f"; skipped unusable model file {os.path.basename(entry['path'])}: "
                                           f"{entry['reason']}" for entry in hello.get("skipped_models", [])))


def report_backend_error(operator, error):
    """Show the first line of `error` (an exception or text) to the artist; the whole message
    (with the backend's stderr tail) goes to the console."""
    operator.report({"ERROR"}, str(error).splitlines()[0] if str(error) else "LION backend error")
    print(f"LION backend error:\n{error}", file=sys.stderr)


def redraw_sidebars():
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "PREFERENCES"):
                area.tag_redraw()


class LION_OT_backend_connect(bpy.types.Operator):
    bl_idname = "lion.backend_connect"
    bl_label = "Connect to LION Backend"
    bl_description = "Start the backend process (or restart it) and check that it answers"

    restart: bpy.props.BoolProperty(name="Restart", description="Stop the running backend first", default=False)

    def execute(self, context):
        """Synchronous path: background mode (where timers never fire) and scripts."""
        try:
            client = backend_client(context)
            if self.restart:
                client.stop()
            hello = client.request("hello").wait(HELLO_TIMEOUT_S)[0]
        except (BackendError, TimeoutError) as error:
            report_backend_error(self, error)
            return {"CANCELLED"}
        self.report({"INFO"}, describe_hello(hello))
        return {"FINISHED"}

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        try:
            client = backend_client(context)
            if self.restart:
                client.stop()
            self._request = client.request("hello")
        except BackendError as error:
            report_backend_error(self, error)
            return {"CANCELLED"}
        self._timer = context.window_manager.event_timer_add(POLL_INTERVAL_S, window=context.window)
        context.window_manager.modal_handler_add(self)
        redraw_sidebars()
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC":
            self._finish(context)
            self.report({"WARNING"}, "Stopped waiting for the LION backend")
            return {"CANCELLED"}
        if event.type != "TIMER" or not self._request.done():
            return {"PASS_THROUGH"}
        self._finish(context)
        try:
            hello = self._request.result()[0]
        except BackendError as error:
            report_backend_error(self, error)
            return {"CANCELLED"}
        self.report({"INFO"}, describe_hello(hello))
        return {"FINISHED"}

    def _finish(self, context):
        context.window_manager.event_timer_remove(self._timer)
        redraw_sidebars()


class LION_OT_backend_stop(bpy.types.Operator):
    bl_idname = "lion.backend_stop"
    bl_label = "Stop LION Backend"
    bl_description = "Stop the backend process and free its memory; the next action starts it again"

    def execute(self, context):
        client = session.current_client()
        if client is not None:
            client.stop()
        redraw_sidebars()
        return {"FINISHED"}


def show_progress(context, job):
    """The job's progress in the status bar (the panel reads it from jobs.current() itself)."""
    fraction, text = job.progress()
    if context.workspace is not None:
        context.workspace.status_text_set(f"{text}  ({fraction:.0%})  ·  Esc to cancel" if job.running else None)
    redraw_sidebars()


class JobOperator:
    """Shared by the action operators: `start_job(context)` starts the job; the rest is the same."""

    # No REGISTER: the redo panel would re-run the job synchronously and freeze the interface.
    bl_options = {"UNDO"}

    def start_job(self, context):
        raise NotImplementedError

    def _start(self, context):
        try:
            return self.start_job(context)
        except SelectionError as error:
            self.report({"ERROR"}, str(error))
        except jobs.JobBusy as error:
            self.report({"ERROR"}, str(error))
        except BackendError as error:
            report_backend_error(self, error)
        except ValueError as error:
            self.report({"ERROR"}, str(error))
        return None

    def execute(self, context):
        job = self._start(context)
        if job is None:
            return {"CANCELLED"}
        try:
            job.wait()
        except KeyboardInterrupt:
            job.cancel()
        return self._end(job)

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        job = self._start(context)
        if job is None:
            return {"CANCELLED"}
        self._job = job
        self._timer = context.window_manager.event_timer_add(POLL_INTERVAL_S, window=context.window)
        context.window_manager.modal_handler_add(self)
        show_progress(context, job)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS":
            self._job.cancel()
        elif event.type != "TIMER":
            return {"PASS_THROUGH"}
        ended = self._job.poll()
        show_progress(context, self._job)
        if not ended:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        return self._end(self._job)

    def _end(self, job):
        if job.state == jobs.FINISHED:
            self.report({"INFO"}, job.message)
            return {"FINISHED"}
        if job.state == jobs.CANCELLED:
            self.report({"WARNING"}, job.message.splitlines()[0])
        else:
            report_backend_error(self, job.message)
        return {"CANCELLED"}


class LION_OT_generate(JobOperator, bpy.types.Operator):
    bl_idname = "lion.generate"
    bl_label = "Generate"
    bl_description = "Generate new shapes at the 3D cursor"

    count: settings.count_property()
    seed: settings.seed_property()
    steps: settings.steps_property()
    output: settings.output_property()
    size: settings.size_property()
    category: settings.category_property()
    guidance: settings.guidance_property()
    model: settings.model_property()

    def start_job(self, context):
        return actions.start_generate(context, self)


class LION_OT_variations(JobOperator, bpy.types.Operator):
    bl_idname = "lion.variations"
    bl_label = "Generate Variations"
    bl_description = "New shapes like each selected mesh, beside it"

    count: settings.count_property()
    similarity: settings.similarity_property()
    seed: settings.seed_property()
    steps: settings.steps_property()
    output: settings.output_property()
    model: settings.model_property()

    def start_job(self, context):
        return actions.start_variations(context, self)


class LION_OT_interpolate(JobOperator, bpy.types.Operator):
    bl_idname = "lion.interpolate"
    bl_label = "Interpolate"
    bl_description = ("Morph between the two selected meshes: one object with a shape key per frame "
                      "and a slider that blends them")

    frames: settings.frames_property()
    seed: settings.seed_property()
    steps: settings.steps_property()
    model: settings.model_property()
    output = "POINTS"  # shape keys need one vertex count across frames: points only

    def start_job(self, context):
        return actions.start_interpolate(context, self)


class LION_OT_voxel_guided(JobOperator, bpy.types.Operator):
    bl_idname = "lion.voxel_guided"
    bl_label = "Generate from Guide"
    bl_description = "New shapes that follow each selected voxel guide (any other mesh is voxelized first)"

    count: settings.count_property()
    similarity: settings.similarity_property()
    seed: settings.seed_property()
    steps: settings.steps_property()
    output: settings.output_property()
    resolution: settings.voxel_resolution_property()
    model: settings.model_property()

    def start_job(self, context):
        return actions.start_voxel_guided(context, self)


class LION_OT_regenerate_region(JobOperator, bpy.types.Operator):
    bl_idname = "lion.regenerate_region"
    bl_label = "Regenerate Region"
    bl_description = "Keep the points selected in Edit Mode and regenerate the others (a new object beside)"

    seed: settings.seed_property()
    steps: settings.steps_property()
    output: settings.output_property()
    model: settings.model_property()

    def start_job(self, context):
        return actions.start_regenerate_region(context, self)


class LION_OT_reconstruct(JobOperator, bpy.types.Operator):
    bl_idname = "lion.reconstruct"
    bl_label = "Reconstruct Mesh"
    bl_description = "A watertight mesh through the points of each selected object, beside it"

    resolution: settings.mesh_resolution_property()
    smoothing: settings.mesh_smoothing_property()

    def start_job(self, context):
        return actions.start_reconstruct(context, self)


class LION_OT_make_voxel_guide(bpy.types.Operator):
    bl_idname = "lion.make_voxel_guide"
    bl_label = "Make Voxel Guide"
    bl_description = "Turn each selected mesh into a blocky voxel guide beside it, to edit and generate from"
    bl_options = {"REGISTER", "UNDO"}

    resolution: settings.voxel_resolution_property()

    def execute(self, context):
        try:
            guides = actions.make_voxel_guides(context, self.resolution)
        except (SelectionError, ValueError) as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Made {len(guides)} voxel guide(s)")
        return {"FINISHED"}


class LION_OT_bake_interpolation(bpy.types.Operator):
    bl_idname = "lion.bake_interpolation"
    bl_label = "Bake Animation"
    bl_description = "Keyframe the active interpolation's slider from 0 to 1 over a frame range"
    bl_options = {"REGISTER", "UNDO"}

    frame_start: bpy.props.IntProperty(name="Start", description="Frame where the blend is 0 "
                                       "(default: the scene's start)", default=1)
    frame_end: bpy.props.IntProperty(name="End", description="Frame where the blend is 1 "
                                     "(default: the scene's end)", default=250)

    def execute(self, context):
        # ghost=False: values remembered from an earlier call do not count as the artist's choice.
        if not self.properties.is_property_set("frame_start", ghost=False):
            self.frame_start = context.scene.frame_start
        if not self.properties.is_property_set("frame_end", ghost=False):
            self.frame_end = context.scene.frame_end
        obj = context.active_object
        if obj is None:
            self.report({"ERROR"}, "Nothing is active: select a LION interpolation")
            return {"CANCELLED"}
        try:
            actions.bake_interpolation(obj, self.frame_start, self.frame_end)
        except (SelectionError, ValueError) as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Keyframed '{obj.name}' from frame {self.frame_start} to {self.frame_end}")
        return {"FINISHED"}


class LION_OT_cancel_job(bpy.types.Operator):
    bl_idname = "lion.cancel_job"
    bl_label = "Cancel"
    bl_description = "Stop the running LION job; nothing of it is added to the scene"

    def execute(self, context):
        if not jobs.cancel_current():
            return {"CANCELLED"}
        redraw_sidebars()
        return {"FINISHED"}


@persistent
def _cancel_job_on_file_load(*_):
    # Loading a file drops modal operators: nothing would poll a job left running.
    jobs.forget()


_classes = (LION_OT_backend_connect, LION_OT_backend_stop, LION_OT_generate, LION_OT_variations,
            LION_OT_interpolate, LION_OT_voxel_guided, LION_OT_regenerate_region, LION_OT_reconstruct,
            LION_OT_make_voxel_guide, LION_OT_bake_interpolation, LION_OT_cancel_job)


def register():
    for cls in _classes:
        bpy.utils.register_class(cls)
    bpy.app.handlers.load_pre.append(_cancel_job_on_file_load)


def unregister():
    jobs.forget()
    if _cancel_job_on_file_load in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_cancel_job_on_file_load)
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
