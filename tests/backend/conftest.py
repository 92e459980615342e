"""Fixtures for choosing the point-voxel operators' path in a test."""
import pytest

from kernels import extension, ops


@pytest.fixture(scope="session")
def cpu_kernels():
    """The compiled CPU operators (built on first use into the kernel cache). Skips only where
    this machine has no C++ toolchain; a compile error fails the test."""
    reason = extension._why_cannot_build("cpu")
    if reason:
        pytest.skip(f"the CPU operators cannot be compiled here: {reason}")
    return extension.build("cpu")


@pytest.fixture(params=["reference", "compiled-cpu"])
def kernel_path(request, monkeypatch):
    """Runs a test once on the PyTorch reference and once on the compiled CPU operators, by
    pinning the module `kernels.ops` dispatches to; yields the path's name."""
    module = None if request.param == "reference" else request.getfixturevalue("cpu_kernels")
    monkeypatch.setattr(ops, "compiled_for", lambda tensor: module)
    return request.param
