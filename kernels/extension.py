"""Finding, building and loading the compiled point-voxel operators, and saying which path runs.

Two builds of kernels/csrc, each a `torch.utils.cpp_extension` module:
- "cpu": the C++ loops (point_voxel_cpu.cpp), for CPU tensors; needs a C++ compiler and ninja.
- "cuda": the same plus the CUDA kernels (point_voxel.cu), for CUDA tensors; needs a CUDA
  build of PyTorch and nvcc.
Both run the per-element code of point_voxel_element.h.

Builds go to a per-user cache folder (env LION_KERNEL_CACHE, else LION_CACHE_DIR/kernels, which
the Blender add-on points at its own user folder, else ~/.cache/lion_blender/kernels), in a
subfolder named after a hash of the sources and the torch / CUDA / Python versions, so a stale
build is never loaded. A build is compiled ahead of time by `python -m kernels.compile`, or on
the first operator call on its device. Whatever goes wrong (no compiler, no device, a compile
error) the PyTorch reference runs and the reason is logged once on the "lion.kernels" logger.

Set LION_KERNELS=reference to never use the compiled operators.
"""
import hashlib
import importlib.machinery
import importlib.util
import logging
import os
import shutil
import sys
import threading

import torch

logger = logging.getLogger("lion.kernels")

SOURCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc")
CPU_SOURCES = ("bindings.cpp", "point_voxel_cpu.cpp")
CUDA_SOURCES = CPU_SOURCES + ("point_voxel.cu",)
HEADERS = ("nearest_cells.h", "point_voxel.h", "point_voxel_cpu.h", "point_voxel_element.h")
# Squared distances must round exactly like the reference's separate multiplies and adds,
# so that every path picks the same neighbours: no fused multiply-add on either compiler.
# The C++ standard is left to torch.utils.cpp_extension, which matches its own headers.
CUDA_FLAGS = ("-O3", "--fmad=false")
HOST_FLAGS = ("-O3", "-ffp-contract=off") if os.name != "nt" else ("/O2", "/fp:precise")
# ATen's parallel_for runs on OpenMP when the code is compiled with it; Apple's clang has no
# OpenMP, so there the loops run on one thread.
OPENMP_FLAGS = {"linux": ("-fopenmp",), "win32": ("/openmp",)}.get(sys.platform, ())
VARIANTS = ("cpu", "cuda")

_lock = threading.Lock()
BUSY = object()  # _load without waiting: another thread holds the lock (compiling, say)
_modules = {}   # variant -> loaded module
_failures = {}  # variant -> why it cannot run
_logged = set()


def cache_dir():
    """The folder that holds compiled extensions (created on first build)."""
    configured = os.environ.get("LION_KERNEL_CACHE")
    if configured:
        return os.path.abspath(os.path.expanduser(configured))
    user_cache = os.environ.get("LION_CACHE_DIR")
    if user_cache:
        return os.path.join(os.path.abspath(os.path.expanduser(user_cache)), "kernels")
    return os.path.join(os.path.expanduser("~"), ".cache", "lion_blender", "kernels")


def sources(variant):
    """The source files of a build ("cpu" or "cuda")."""
    return {"cpu": CPU_SOURCES, "cuda": CUDA_SOURCES}[variant]


def extension_name(variant="cpu"):
    """Module name of the build of these sources for this torch, CUDA and Python."""
    digest = hashlib.sha256()
    for source in sources(variant) + HEADERS:
        with open(os.path.join(SOURCE_DIR, source), "rb") as f:
            digest.update(f.read())
    digest.update(f"torch={torch.__version__};cuda={torch.version.cuda};python={sys.version_info[:2]}".encode())
    return f"lion_kernels_{variant}_{digest.hexdigest()[:16]}"


def build_dir(variant="cpu"):
    """The folder the current sources of `variant` build into."""
    return os.path.join(cache_dir(), extension_name(variant))


def _why_not_possible(variant):
    """Why `variant` cannot run in this process, or None if it might."""
    if os.environ.get("LION_KERNELS", "auto") == "reference":
        return "LION_KERNELS=reference"
    if variant == "cuda":
        if torch.version.cuda is None:
            return f"this PyTorch build ({torch.__version__}) has no CUDA support"
        if not torch.cuda.is_available():
            return "no CUDA device is available"
    return None


def _why_cannot_build(variant):
    """Why `build(variant)` would fail before compiling anything, or None."""
    from torch.utils import cpp_extension

    if variant == "cuda":
        if torch.version.cuda is None:
            return f"this PyTorch build ({torch.__version__}) has no CUDA support"
        cuda_home = cpp_extension.CUDA_HOME
        if cuda_home is None or not os.path.exists(os.path.join(cuda_home, "bin", "nvcc")):
            return "the CUDA compiler nvcc was not found (set CUDA_HOME)"
    compiler = os.environ.get("CXX", "cl" if os.name == "nt" else "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler was found ({compiler!r} is not on PATH)"
    if not cpp_extension.is_ninja_available():
        return "ninja is not installed (pip install ninja)"
    return None


def _import_library(path, name):
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def build(variant="cpu", verbose=False):
    """Compile `variant` into `build_dir(variant)` (a no-op when it is up to date) and load it.

    The "cuda" build needs no CUDA device, only a CUDA build of PyTorch and nvcc; set
    TORCH_CUDA_ARCH_LIST to choose the GPU architectures when no device is visible.
    Returns the loaded module; raises RuntimeError with the reason when it cannot be built.
    """
    from torch.utils import cpp_extension

    reason = _why_cannot_build(variant)
    if reason:
        raise RuntimeError(reason)
    os.makedirs(build_dir(variant), exist_ok=True)
    host_flags = list(HOST_FLAGS + OPENMP_FLAGS) + (["-DLION_WITH_CUDA"] if variant == "cuda" else [])
    try:
        return cpp_extension.load(
            name=extension_name(variant),
            sources=[os.path.join(SOURCE_DIR, source) for source in sources(variant)],
            extra_cflags=host_flags,
            extra_cuda_cflags=list(CUDA_FLAGS),
            extra_ldflags=list(OPENMP_FLAGS),
            build_directory=build_dir(variant),
            verbose=verbose,
        )
    except Exception as error:
        raise RuntimeError(f"compiling the {variant} operators failed: {error}") from error


def _load(variant, allow_build, wait=True):
    """The module of `variant`, loaded (and with allow_build compiled if needed) once per
    process, or None when it cannot run (the reason is in _failures) or is not built yet.
    Without `wait`, BUSY when another thread is loading or compiling right now."""
    if variant in _modules:  # every operator call asks: no lock once loaded
        return _modules[variant]
    if not _lock.acquire(blocking=wait):
        return BUSY
    try:
        return _load_locked(variant, allow_build)
    finally:
        _lock.release()


def _load_locked(variant, allow_build):
    if variant in _modules or variant in _failures:
        return _modules.get(variant)
    reason = _why_not_possible(variant)
    module = None
    name = extension_name(variant)  # hashes the sources: once
    library = os.path.join(cache_dir(), name, name + (".pyd" if os.name == "nt" else ".so"))
    if reason is None and os.path.exists(library):
        try:
            module = _import_library(library, name)
        except ImportError as error:
            reason = f"the cached build at {library} does not load: {error}"
    elif reason is None and not allow_build:
        return None
    elif reason is None:
        logger.info("compiling the %s point-voxel operators into %s (first use only; a minute or two)",
                    variant, os.path.dirname(library))
        try:
            module = build(variant)
        except RuntimeError as error:
            reason = str(error)
    if module is not None:
        _modules[variant] = module
        _log_once(variant, "point-voxel operators: compiled kernels for %s tensors (%s)", variant,
                  os.path.dirname(library))
    else:
        _failures[variant] = reason
        could_run = _why_not_possible(variant) is None
        _log_once(variant, "point-voxel operators: PyTorch reference for %s tensors, because %s", variant,
                  reason, level=logging.WARNING if could_run else logging.INFO)
    return module


def _log_once(key, message, *args, level=logging.INFO):
    if key not in _logged:
        _logged.add(key)
        logger.log(level, message, *args)


def compiled_for(tensor):
    """The compiled module that runs operators on `tensor`'s device (loading, or compiling it
    on first use), or None when the reference must run."""
    device = tensor.device.type
    if device not in VARIANTS:
        _log_once(f"device:{device}", "point-voxel operators: PyTorch reference for %s tensors", device)
        return None
    return _load(device, allow_build=True)


def implementation_info(load=False):
    """Which implementation runs on each device in this process, and why.

    Returns a dict of plain values: per variant, "cpu" / "cuda" ("compiled" or "reference")
    with "cpu_reason" / "cuda_reason" (a sentence); "active", a one-line summary such as
    "compiled (cpu)"; "reason", the sentences joined; "cuda_device" (bool); "cache_dir".
    It loads already compiled builds from the cache but compiles nothing, unless load=True:
    then a missing build that could run here is compiled now (a minute or two, once), exactly
    as the first operator call on that device would.
    """
    info = {"cuda_device": bool(torch.cuda.is_available()), "cache_dir": cache_dir()}
    for variant in VARIANTS:
        module = _load(variant, allow_build=load, wait=load)
        if module is BUSY:
            info[variant] = "reference"
            info[f"{variant}_reason"] = "being loaded or compiled for a running job (a minute or two, once)"
        elif module is not None:
            info[variant], info[f"{variant}_reason"] = "compiled", f"compiled kernels loaded from {build_dir(variant)}"
        elif variant in _failures:
            info[variant], info[f"{variant}_reason"] = "reference", _failures[variant]
        else:
            info[variant] = "reference"
            info[f"{variant}_reason"] = ("not compiled yet: they compile on the first operator call on "
                                         f"{variant} (or run python -m kernels.compile)")
    compiled = [variant for variant in VARIANTS if info[variant] == "compiled"]
    info["active"] = f"compiled ({', '.join(compiled)})" if compiled else "reference"
    info["reason"] = "; ".join(f"{variant}: {info[f'{variant}_reason']}" for variant in VARIANTS)
    return info
