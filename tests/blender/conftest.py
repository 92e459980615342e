"""Real-Blender test setup: a throwaway Blender user folder, then our extension installed from its zip.

These tests run with Blender's Python (.venv-blender: the bpy module, no torch); the backend
they talk to runs in the backend environment (.venv), as on an artist's machine.
"""
import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO_ROOT, "scripts"))

import blender_harness  # noqa: E402

# Before any test module imports bpy: the artist's real Blender folder is never touched.
USER_FOLDER = blender_harness.use_throwaway_user_folder()


def pytest_collection_modifyitems(config, items):
    for item in items:
        item.add_marker(pytest.mark.blender)


@pytest.fixture(scope="session")
def backend_python():
    path = os.environ.get("LION_BACKEND_PYTHON", os.path.join(REPO_ROOT, ".venv", "bin", "python"))
    if not os.path.isfile(path):
        pytest.fail(f"no backend environment at {path}: run python3 build.py setup")
    return path


@pytest.fixture(scope="session")
def extension_zip():
    """The zip `build.py test` just built, or a fresh build when run directly under pytest."""
    path = os.environ.get("LION_EXTENSION_ZIP")
    if not path:
        subprocess.run(["python3", os.path.join(REPO_ROOT, "build.py"),
                        "build"], check=True, cwd=REPO_ROOT)
        dist = os.path.join(REPO_ROOT, "dist")
        path = max((os.path.join(dist, f) for f in os.listdir(dist) if f.endswith(".zip")), key=os.path.getmtime)
    return path


@pytest.fixture(scope="session")
def addon(extension_zip, backend_python):
    """The installed, enabled add-on module (bl_ext.user_default.lion_blender)."""
    module = blender_harness.install_extension(extension_zip, backend_python)
    yield module
    module.session.shutdown()


# An untrained model of the "tiny" config: meaningless shapes, but real arrays of the real sizes,
# which is what the add-on's tests check (counts, placement, properties, shape keys, undo).
_MAKE_TINY_MODEL = """
import sys, torch
from backend.checkpoint import save_model
from backend.config import get_config
from backend.data.normalization import ShapeBoxNormalization
from backend.models import LionModel
torch.manual_seed(0)
config = get_config("tiny")
config.shape_prior.categories = list(TEST_CATEGORIES)
model = LionModel(config, ShapeBoxNormalization())
torch.nn.init.normal_(model.shape_prior.category_embedding.weight)  # as if trained: categories matter
save_model(sys.argv[1], model)
"""
TEST_MODEL = "tiny-untrained"
TEST_CATEGORIES = ("chair", "table")
TINY_POINTS = 2048


@pytest.fixture(scope="session")
def test_model_folder(backend_python, tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    script = f"TEST_CATEGORIES = {TEST_CATEGORIES!r}\n" + _MAKE_TINY_MODEL
    subprocess.run([backend_python, "-c", script, str(folder / f"{TEST_MODEL}.safetensors")],
                   check=True, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": REPO_ROOT})
    return str(folder)


@pytest.fixture
def lion(addon, test_model_folder):
    """The add-on computing on the CPU with the test model; one backend shared by the tests.

    Set for every test, and looked up afresh: disabling and enabling the add-on (as a test of
    the extension does) reloads its module and resets its preferences. Unchanged settings
    keep the running backend.
    """
    prefs = blender_harness.addon_preferences()
    if (prefs.model_folder, prefs.device) != (test_model_folder, "cpu"):
        prefs.model_folder, prefs.device = test_model_folder, "cpu"
    return sys.modules[blender_harness.ADDON_MODULE]


@pytest.fixture
def scene(lion):
    """An empty scene (no objects, no LION Results) with the 3D cursor at the origin."""
    import bpy

    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    for collection in list(bpy.data.collections):
        bpy.data.collections.remove(collection)
    for mesh in list(bpy.data.meshes):
        bpy.data.meshes.remove(mesh)
    bpy.context.scene.cursor.location = (0.0, 0.0, 0.0)
    lion.jobs.forget()
    return bpy.context.scene
