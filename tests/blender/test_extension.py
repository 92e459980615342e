"""The extension as an artist installs it: built zip, Blender's validator, Install from Disk, the backend."""
import os
import signal
import subprocess
import sys
import time

import bpy
import pytest

import blender_harness


def blender_ext_tool():
    return os.path.join(os.path.dirname(bpy.__file__).split("/scripts/modules")[0], "scripts", "addons_core",
                        "bl_pkg", "cli", "blender_ext.py")


def test_zip_passes_blenders_validator(extension_zip):
    result = subprocess.run([sys.executable, blender_ext_tool(), "validate", extension_zip],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout


def test_install_lands_in_the_throwaway_user_folder(addon):
    from conftest import USER_FOLDER

    assert addon.__file__.startswith(USER_FOLDER)
    assert blender_harness.ADDON_MODULE in bpy.context.preferences.addons
    assert hasattr(bpy.types, "LION_PT_backend") and hasattr(bpy.ops.lion, "backend_connect")
    panel = bpy.types.LION_PT_backend
    assert (panel.bl_space_type, panel.bl_region_type, panel.bl_category) == ("VIEW_3D", "UI", "LION")


def test_connect_gets_hello_from_the_backend(addon):
    assert bpy.ops.lion.backend_connect() == {"FINISHED"}
    client = addon.session.current_client()
    assert client.state == "ready"
    assert client.hello["device"] == "cpu" and client.hello["torch"].startswith("2.")
    assert addon.session.status_text(client).startswith("Backend: ready on cpu")


def test_backend_writes_nothing_into_the_extension_folder(addon):
    assert bpy.ops.lion.backend_connect(restart=True) == {"FINISHED"}
    extension_dir = os.path.dirname(addon.__file__)
    written = [os.path.join(d, f) for d, _, files in os.walk(os.path.join(extension_dir, "backend")) for f in files
               if f.endswith(".pyc")]
    assert written == []


def test_restart_gives_a_new_backend_process(addon):
    assert bpy.ops.lion.backend_connect() == {"FINISHED"}
    first = addon.session.current_client()._connection.process.pid
    assert bpy.ops.lion.backend_connect(restart=True) == {"FINISHED"}
    second = addon.session.current_client()._connection.process.pid
    assert first != second and not process_exists(first)


def test_stop_operator_ends_the_backend(addon):
    assert bpy.ops.lion.backend_connect() == {"FINISHED"}
    pid = addon.session.current_client()._connection.process.pid
    assert bpy.ops.lion.backend_stop() == {"FINISHED"}
    assert not process_exists(pid)
    assert addon.session.status_text(addon.session.current_client()) == "Backend: stopped"


def test_missing_backend_python_is_reported_clearly(addon, backend_python):
    prefs = blender_harness.addon_preferences()
    prefs.backend_python = "/nonexistent/python3"
    try:
        with pytest.raises(RuntimeError, match="not found"):
            bpy.ops.lion.backend_connect()
        assert addon.session.current_client().state == "failed"
    finally:
        prefs.backend_python = backend_python


def test_backend_python_without_torch_is_reported_clearly(addon, backend_python):
    prefs = blender_harness.addon_preferences()
    prefs.backend_python = sys.executable  # Blender's own environment: no torch, as intended
    try:
        with pytest.raises(RuntimeError, match="lacks the package .torch."):
            bpy.ops.lion.backend_connect()
    finally:
        prefs.backend_python = backend_python
    assert bpy.ops.lion.backend_connect() == {"FINISHED"}


def test_disabling_the_addon_stops_its_backend(addon):
    assert bpy.ops.lion.backend_connect() == {"FINISHED"}
    pid = addon.session.current_client()._connection.process.pid
    bpy.ops.preferences.addon_disable(module=blender_harness.ADDON_MODULE)
    try:
        assert not process_exists(pid)
    finally:
        bpy.ops.preferences.addon_enable(module=blender_harness.ADDON_MODULE)


def process_exists(pid, wait_s=5.0):
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            finished = pid  # already reaped by its Popen
        if finished == pid:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.05)
    return True


def test_process_exists_helper_sees_a_live_process():
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert process_exists(child.pid, wait_s=0.2)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert not process_exists(child.pid)
