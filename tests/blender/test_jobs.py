"""The non-blocking path (the poll function driven by hand, as the UI's timer does), cancel,
a backend that dies mid-job, and every way an action can be refused: each ends with a clear
report and leaves the scene as it was."""
import os
import signal
import sys
import time
from types import SimpleNamespace

import blender_harness
import bpy
import pytest

from test_actions import add_mesh, results, select


def settings(**overrides):
    values = {"count": 1, "seed": 0, "steps": 2, "similarity": 0.7, "output": "POINTS", "model": "",
              "size": 1.0, "frames": 3, "resolution": 8}
    return SimpleNamespace(**{**values, **overrides})


def poll_until(job, condition, timeout=300.0):
    """Call job.poll() every 20 ms, as the add-on's timer does, until `condition()` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the job did not get there in time")
        job.poll()
        time.sleep(0.02)


def long_job(lion):
    """A sampling job long enough (1000 DDIM steps per latent) to be caught while it runs."""
    return lion.actions.start_generate(bpy.context, settings(steps=1000))


def test_polling_shows_progress_before_the_result_arrives(lion, scene):
    lion.actions.start_generate(bpy.context, settings())  # a first job starts the backend
    job = lion.jobs.current()
    poll_until(job, lambda: not job.running)
    assert job.state == lion.jobs.FINISHED, job.message
    select(add_mesh("cube"))

    job = lion.actions.start_variations(bpy.context, settings(count=2, steps=8))
    assert job.running and lion.jobs.is_running()
    seen = []

    def progressed():
        fraction, text = job.progress()
        seen.append((fraction, text, len(results(scene))))
        return job.request.progress is not None or not job.running

    poll_until(job, progressed)
    assert job.running, "the reply came before any progress event"
    fraction, text, created = seen[-1]
    # A stage's last step may be the first event seen (fast steps): still running, nothing made yet.
    assert 0.0 <= fraction <= 1.0 and text.startswith("Variations: ") and created == 1
    poll_until(job, lambda: not job.running)
    assert job.state == lion.jobs.FINISHED and job.message == "Created 2 variation(s)"
    assert len(results(scene)) == 3


def test_only_one_job_runs_at_a_time(lion, scene):
    job = long_job(lion)
    try:
        with pytest.raises(RuntimeError, match="busy with Generate"):
            bpy.ops.lion.generate(count=1, steps=2)
    finally:
        job.cancel()


def test_cancel_mid_job_leaves_nothing_and_the_backend_usable(lion, scene):
    job = long_job(lion)
    poll_until(job, lambda: job.request.progress is not None or not job.running)
    assert job.running, job.message
    assert lion.jobs.cancel_current()
    assert job.state == lion.jobs.CANCELLED and job.poll()
    client = lion.session.current_client()
    deadline = time.monotonic() + 60
    while client._connection.pending and time.monotonic() < deadline:  # the backend's cancelled reply
        time.sleep(0.05)
    assert not client._connection.pending, "the backend stopped within a step"
    assert results(scene) == []
    assert bpy.ops.lion.generate(count=1, steps=2) == {"FINISHED"}
    assert len(results(scene)) == 1


def test_backend_crash_mid_job_ends_the_job_with_the_reason(lion, scene):
    keep = add_mesh("cube")
    job = long_job(lion)
    poll_until(job, lambda: job.request.progress is not None or not job.running)
    assert job.running, job.message
    client = lion.session.current_client()
    pid = client._connection.process.pid
    os.kill(pid, signal.SIGKILL)
    poll_until(job, lambda: not job.running, timeout=30)
    assert job.state == lion.jobs.FAILED
    assert job.message.startswith("The backend stopped unexpectedly (exit code -9)")
    assert results(scene) == [] and [o.name for o in bpy.data.objects] == [keep.name]
    assert client.state == "failed"
    assert bpy.ops.lion.generate(count=1, steps=2) == {"FINISHED"}, "the next action starts a fresh backend"
    assert client._connection.process.pid != pid


@pytest.mark.parametrize("make_selection, message", [
    (lambda: select(), "Nothing is selected"),
    (lambda: select(text_object()), "is a text object, not a mesh"),
    (lambda: select(empty_mesh()), "is an empty mesh"),
])
def test_bad_selection_for_variations_is_refused_clearly(lion, scene, make_selection, message):
    make_selection()
    names = sorted(o.name for o in bpy.data.objects)
    with pytest.raises(RuntimeError, match=message):
        bpy.ops.lion.variations(count=1, steps=2)
    assert sorted(o.name for o in bpy.data.objects) == names and not lion.jobs.is_running()


def test_a_mesh_beyond_the_backends_budget_is_refused_before_it_is_read(lion, scene, monkeypatch):
    from importlib import import_module

    schema = import_module(f"{lion.__name__}.wire").op_schema
    monkeypatch.setattr(schema, "MAX_TRIANGLES", 100)  # a stand-in for 10 million: the same check
    bpy.ops.mesh.primitive_uv_sphere_add()  # 32 x 16 segments: 960 triangles
    sphere = bpy.context.active_object
    select(sphere)
    with pytest.raises(RuntimeError, match=r"has 960 triangles, more than the 100 LION takes: reduce it first"):
        bpy.ops.lion.variations(count=1, steps=2)
    assert results(scene) == [] and not lion.jobs.is_running()


def test_interpolate_needs_two_meshes(lion, scene):
    select(add_mesh("cube"))
    with pytest.raises(RuntimeError, match="needs exactly 2 selected mesh objects, 1 is selected"):
        bpy.ops.lion.interpolate(frames=3, steps=2)
    assert results(scene) == []


def test_regenerate_region_needs_some_vertices_kept_and_some_not(lion, scene):
    select(add_mesh("cube"))
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        bpy.ops.mesh.select_all(action="DESELECT")
        with pytest.raises(RuntimeError, match="No vertices are selected"):
            bpy.ops.lion.regenerate_region(steps=2)
        bpy.ops.mesh.select_all(action="SELECT")
        with pytest.raises(RuntimeError, match="Every vertex is selected"):
            bpy.ops.lion.regenerate_region(steps=2)
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
    assert results(scene) == []


def test_regenerate_region_sends_the_kept_points_and_reports_progress(lion, scene):
    """The backend's RePaint runs every one of its 1000 steps, minutes on a CPU: this checks
    that the request is accepted and progresses, then cancels it."""
    assert bpy.ops.lion.generate(count=1, steps=2) == {"FINISHED"}
    (points,) = results(scene)
    select(points)
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        bpy.ops.mesh.select_all(action="DESELECT")
        bpy.ops.object.mode_set(mode="OBJECT")
        points.data.vertices[0].select = points.data.vertices[1].select = True
        bpy.ops.object.mode_set(mode="EDIT")
        job = lion.actions.start_regenerate_region(bpy.context, settings())
        poll_until(job, lambda: job.request.progress is not None or not job.running)
        assert job.running, job.message
        job.cancel()
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
    assert results(scene) == [points]


def test_missing_backend_python_refuses_the_action(lion, scene, backend_python):
    prefs = blender_harness.addon_preferences()
    prefs.backend_python = "/nonexistent/python3"
    try:
        with pytest.raises(RuntimeError, match="backend Python was not found"):
            bpy.ops.lion.generate(count=1, steps=2)
    finally:
        prefs.backend_python = backend_python
    assert results(scene) == [] and not lion.jobs.is_running()


def test_backend_python_without_torch_fails_the_action_clearly(lion, scene, backend_python):
    prefs = blender_harness.addon_preferences()
    prefs.backend_python = sys.executable  # Blender's own environment: no torch
    try:
        with pytest.raises(RuntimeError, match="lacks the package .torch."):
            bpy.ops.lion.generate(count=1, steps=2)
    finally:
        prefs.backend_python = backend_python
    assert results(scene) == [] and lion.jobs.current().state == lion.jobs.FAILED


def text_object():
    bpy.ops.object.text_add()
    return bpy.context.active_object


def empty_mesh():
    obj = bpy.data.objects.new("Nothing", bpy.data.meshes.new("Nothing"))
    bpy.context.scene.collection.objects.link(obj)
    return obj
