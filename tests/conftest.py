"""Shared pytest setup: the repository root on sys.path, and CUDA tests skipped without CUDA."""
import importlib.util
import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)
# The compiled point-voxel operators that `build.py setup` builds; the backends the tests start
# use them too, instead of compiling into each test's own cache folder.
os.environ.setdefault("LION_KERNEL_CACHE", os.path.join(REPO_ROOT, ".cache", "kernels"))


def _cuda_available():
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device on this machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
