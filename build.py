#!/usr/bin/env python3
"""Task runner for LION for Blender (stdlib only; runs on the system python3).

    python3 build.py setup     make .venv (backend: torch, ...) and one environment per tested Blender
    python3 build.py build     the extension zip in dist/, validated by Blender's own tool
    python3 build.py kernels   compile the point-voxel operators (CPU; CUDA where torch has it)
    python3 build.py test      setup, build, then every test suite
    python3 build.py demo      setup, build, then the main job in headless Blender
    python3 build.py bench     setup, then every benchmark (tables + JSON in bench/results/)
    python3 build.py train-default   train, evaluate and package the shipped model (models/)

Arguments after the command go to pytest (test), the benchmark scripts (bench) or the recipe
(train-default).
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import venv

ROOT = os.path.dirname(os.path.abspath(__file__))
BACKEND_VENV = os.path.join(ROOT, ".venv")
BACKEND_PYTHON = os.path.join(BACKEND_VENV, "bin", "python")
# Every Blender the add-on is tested on, as the `bpy` module from PyPI, each in its own
# environment: (version, environment, requirements file). The first builds the extension and
# runs the demo; the add-on's test suite runs on each, and each one's own tool validates the zip.
BLENDERS = [
    ("4.5", os.path.join(ROOT, ".venv-blender"), "blender.txt"),
    ("5.0", os.path.join(ROOT, ".venv-blender-5.0"), "blender-5.0.txt"),
    ("4.2", os.path.join(ROOT, ".venv-blender-4.2"), "blender-4.2.txt"),
]
BLENDER_VENV = BLENDERS[0][1]
BLENDER_PYTHON = os.path.join(BLENDER_VENV, "bin", "python")
STAGE_DIR = os.path.join(ROOT, "build", "lion_blender")
DIST_DIR = os.path.join(ROOT, "dist")
# Compiled point-voxel operators of this checkout: built by setup, used by every process that
# build.py starts (the tests' and the demo's backends included), so none compiles on its own.
os.environ.setdefault("LION_KERNEL_CACHE", os.path.join(ROOT, ".cache", "kernels"))
# What the installed extension needs besides the add-on itself: the backend runs from there.
BUNDLED_PACKAGES = ("backend", "kernels")
BUNDLED_OPTIONAL = ("models",)


def log(message):
    print(f"[build.py] {message}", flush=True)


def run(args, **kwargs):
    log(" ".join(args))
    return subprocess.run(args, cwd=kwargs.pop("cwd", ROOT), **kwargs)


def check(args, **kwargs):
    result = run(args, **kwargs)
    if result.returncode != 0:
        sys.exit(f"[build.py] failed ({result.returncode}): {' '.join(args)}")


# -- setup -------------------------------------------------------------------------------------

def has_nvidia_gpu():
    nvidia_smi = shutil.which("nvidia-smi")
    return bool(nvidia_smi) and subprocess.run([nvidia_smi, "-L"], capture_output=True).returncode == 0


def installed_torch_is_cuda(python):
    probe = "import torch,sys; sys.exit(0 if torch.version.cuda else 1)"
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0


def make_venv(path, requirements, extra_key=""):
    """Create the environment and install `requirements` unless the same set is already in."""
    python = os.path.join(path, "bin", "python")
    stamp = os.path.join(path, ".lion-requirements.sha256")
    with open(requirements, "rb") as f:
        digest = hashlib.sha256(f.read() + extra_key.encode()).hexdigest()
    if os.path.isfile(python) and os.path.isfile(stamp) and open(stamp).read() == digest:
        return python
    if not os.path.isfile(python):
        log(f"creating {os.path.relpath(path, ROOT)}")
        venv.EnvBuilder(with_pip=True).create(path)
    args = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", requirements]
    if extra_key == "keep-cuda-torch":
        # A CUDA build of torch already here stays: the pinned version could resolve to a CPU wheel.
        args = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q",
                *[line for line in _requirement_lines(requirements) if not line.startswith("torch")]]
    check(args)
    with open(stamp, "w") as f:
        f.write(digest)
    return python


def _requirement_lines(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def setup():
    requirements = os.path.join(ROOT, "requirements")
    keep_cuda = os.path.isfile(BACKEND_PYTHON) and has_nvidia_gpu() and installed_torch_is_cuda(BACKEND_PYTHON)
    make_venv(BACKEND_VENV, os.path.join(requirements, "backend.txt"), "keep-cuda-torch" if keep_cuda else "")
    for version, path, requirements_file in BLENDERS:
        make_venv(path, os.path.join(requirements, requirements_file))
    log("environments ready: .venv (backend), " + ", ".join(
        f"{os.path.basename(path)} (Blender {version})" for version, path, _ in BLENDERS))
    # A no-op when the build is current. Without a C++ compiler the backend runs the PyTorch
    # reference operators (slower, same results) and says so in `hello`.
    if run([BACKEND_PYTHON, "-m", "kernels.compile", "--cpu"]).returncode != 0:
        log("the compiled CPU operators could not be built: the backend will use the PyTorch reference")


# -- build -------------------------------------------------------------------------------------

def blender_python(venv_path):
    return os.path.join(venv_path, "bin", "python")


def blender_ext_tool(python):
    """Blender's own extension tool, shipped inside that Blender's bpy package (under its
    version folder, "4.5" or "5.0")."""
    # find_spec locates the bpy package without starting Blender.
    probe = "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('bpy').origin))"
    bpy_dir = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    tail = os.path.join("scripts", "addons_core", "bl_pkg", "cli", "blender_ext.py")
    found = [os.path.join(bpy_dir, name, tail) for name in sorted(os.listdir(bpy_dir))
             if os.path.isfile(os.path.join(bpy_dir, name, tail))]
    if len(found) != 1:
        sys.exit(f"[build.py] expected one blender_ext.py in {bpy_dir}, found {found}")
    return found[0]


def git_commit():
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def stage():
    """Assemble the extension folder: add-on, manifest, backend sources, bundled models."""
    shutil.rmtree(STAGE_DIR, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(os.path.join(ROOT, "lion_blender"), STAGE_DIR, ignore=ignore)
    shutil.copy2(os.path.join(ROOT, "blender_manifest.toml"), STAGE_DIR)
    for name in BUNDLED_PACKAGES + BUNDLED_OPTIONAL:
        source = os.path.join(ROOT, name)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(STAGE_DIR, name), ignore=ignore)
    info = {
        "commit": git_commit(),
        # A developer's build points the add-on at the backend environment made here; an
        # artist's install finds no such file and asks for one in the preferences.
        "backend_python": BACKEND_PYTHON if os.path.isfile(BACKEND_PYTHON) else "",
    }
    with open(os.path.join(STAGE_DIR, "build_info.json"), "w") as f:
        json.dump(info, f, indent=2)
    return STAGE_DIR


def build():
    """Build and validate the extension zip; return its path."""
    stage()
    os.makedirs(DIST_DIR, exist_ok=True)
    check([BLENDER_PYTHON, blender_ext_tool(BLENDER_PYTHON), "build", "--source-dir", STAGE_DIR, "--output-dir", DIST_DIR])
    zips = [f for f in os.listdir(DIST_DIR) if f.startswith("lion_blender-") and f.endswith(".zip")]
    path = os.path.join(DIST_DIR, max(zips, key=lambda f: os.path.getmtime(os.path.join(DIST_DIR, f))))
    for _, venv_path, _ in BLENDERS:
        python = blender_python(venv_path)
        check([python, blender_ext_tool(python), "validate", path])
    log(f"extension: {os.path.relpath(path, ROOT)}")
    return path


# -- the commands --------------------------------------------------------------------------------

def cmd_setup(args):
    setup()


def cmd_build(args):
    setup()
    build()


def cmd_kernels(args):
    setup()
    check([BACKEND_PYTHON, "-m", "kernels.compile", "--verbose", *args])


def cmd_test(args):
    setup()
    zip_path = build()
    env = dict(os.environ, LION_EXTENSION_ZIP=zip_path, LION_BACKEND_PYTHON=BACKEND_PYTHON)
    suites = [("backend", [BACKEND_PYTHON, "-m", "pytest", "tests/backend", *args])]
    suites += [(f"blender {version}", [blender_python(path), "-m", "pytest", "tests/blender", *args])
               for version, path, _ in BLENDERS]
    failed = [name for name, command in suites if run(command, env=env).returncode != 0]
    if failed:
        sys.exit(f"[build.py] test suites failed: {', '.join(failed)}")
    log("all test suites passed")


def cmd_demo(args):
    setup()
    zip_path = build()
    check([BLENDER_PYTHON, os.path.join("scripts", "demo.py"), "--zip", zip_path,
           "--backend-python", BACKEND_PYTHON, "--out", os.path.join(ROOT, "demo_out"), *args])


def cmd_bench(args):
    setup()
    bench_dir = os.path.join(ROOT, "bench")
    scripts = sorted(f for f in os.listdir(bench_dir) if f.startswith("bench_") and f.endswith(".py"))
    failed = [s for s in scripts if run([BACKEND_PYTHON, os.path.join("bench", s), *args]).returncode != 0]
    if failed:
        sys.exit(f"[build.py] benchmarks failed: {', '.join(failed)}")


def cmd_train_default(args):
    setup()
    check([BACKEND_PYTHON, os.path.join("scripts", "train_default_model.py"), *args])


COMMANDS = {"setup": cmd_setup, "build": cmd_build, "kernels": cmd_kernels, "test": cmd_test,
            "demo": cmd_demo, "bench": cmd_bench, "train-default": cmd_train_default}


def main(argv):
    if not argv or argv[0] not in COMMANDS:
        print(__doc__)
        return 2
    COMMANDS[argv[0]](argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
