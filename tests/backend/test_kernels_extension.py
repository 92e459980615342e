"""Choosing between the compiled operators and the reference, per device, and saying why."""
import logging
import os

import pytest
import torch

from kernels import extension, ops


@pytest.fixture
def fresh_state(monkeypatch):
    """Forget any earlier load decision of this process for the duration of a test."""
    monkeypatch.setattr(extension, "_modules", {})
    monkeypatch.setattr(extension, "_failures", {})
    monkeypatch.setattr(extension, "_logged", set())


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LION_KERNEL_CACHE", str(tmp_path / "kernels-here"))
    monkeypatch.setenv("LION_CACHE_DIR", str(tmp_path / "user"))
    assert extension.cache_dir() == str(tmp_path / "kernels-here")
    assert extension.build_dir("cpu").startswith(str(tmp_path / "kernels-here"))
    monkeypatch.delenv("LION_KERNEL_CACHE")
    # The add-on points LION_CACHE_DIR at its own user folder.
    assert extension.cache_dir() == str(tmp_path / "user" / "kernels")
    monkeypatch.delenv("LION_CACHE_DIR")
    assert extension.cache_dir().endswith(os.path.join(".cache", "lion_blender", "kernels"))


@pytest.mark.parametrize("variant", extension.VARIANTS, ids=lambda v: f"{v}-build")
def test_build_name_depends_on_the_sources_of_its_variant(monkeypatch, tmp_path, variant):
    name = extension.extension_name(variant)
    assert name.startswith(f"lion_kernels_{variant}_")
    for source in extension.CUDA_SOURCES + extension.HEADERS:
        (tmp_path / source).write_text("// edited\n")
    monkeypatch.setattr(extension, "SOURCE_DIR", str(tmp_path))
    assert extension.extension_name(variant) != name
    # Every file of a build is hashed, the shared per-element header included.
    assert set(extension.HEADERS) >= {"point_voxel_element.h"}
    assert set(extension.sources(variant)) >= {"bindings.cpp", "point_voxel_cpu.cpp"}


def test_forcing_the_reference_is_reported_once_per_device(monkeypatch, fresh_state, caplog):
    monkeypatch.setenv("LION_KERNELS", "reference")
    with caplog.at_level(logging.INFO, logger="lion.kernels"):
        info = extension.implementation_info(load=True)
        extension.implementation_info(load=True)
        assert extension.compiled_for(torch.zeros(1)) is None
    assert info["active"] == "reference" and info["cpu"] == "reference" and info["cuda"] == "reference"
    assert "LION_KERNELS=reference" in info["cpu_reason"] and "LION_KERNELS=reference" in info["reason"]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and all("LION_KERNELS=reference" in m for m in messages)


def test_cpu_tensors_use_the_compiled_operators_and_say_so_once(cpu_kernels, fresh_state, caplog):
    with caplog.at_level(logging.INFO, logger="lion.kernels"):
        first = extension.compiled_for(torch.zeros(1))
        second = extension.compiled_for(torch.zeros(2))
    assert first is not None and second is first
    assert len(caplog.records) == 1 and "compiled kernels for cpu tensors" in caplog.records[0].getMessage()
    info = extension.implementation_info()
    assert info["cpu"] == "compiled" and info["active"].startswith("compiled (cpu")


def test_other_devices_use_the_reference_and_say_so_once(fresh_state, caplog):
    with caplog.at_level(logging.INFO, logger="lion.kernels"):
        assert extension.compiled_for(torch.zeros(1, device="meta")) is None
        assert extension.compiled_for(torch.zeros(2, device="meta")) is None
    assert len(caplog.records) == 1 and "reference for meta tensors" in caplog.records[0].getMessage()


def test_a_machine_without_a_compiler_runs_the_reference_and_says_why(monkeypatch, fresh_state, tmp_path, caplog):
    monkeypatch.setenv("LION_KERNEL_CACHE", str(tmp_path))  # nothing built here
    monkeypatch.setenv("CXX", "no-such-compiler")
    points = torch.rand(1, 3, 20, dtype=torch.float64)
    with caplog.at_level(logging.INFO, logger="lion.kernels"):
        idx = ops.ball_query(points[:, :, :4], points, 0.5, 3)
    assert idx.shape == (1, 4, 3)
    info = extension.implementation_info()
    assert info["cpu"] == "reference" and "no C++ compiler" in info["cpu_reason"]
    assert any("no C++ compiler" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_info_without_load_compiles_nothing(monkeypatch, fresh_state, tmp_path):
    def no_build(variant="cpu", verbose=False):
        raise AssertionError("implementation_info() must not compile")

    monkeypatch.setenv("LION_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(extension, "build", no_build)
    info = extension.implementation_info()
    assert info["cpu"] == "reference" and "not compiled yet" in info["cpu_reason"]


def test_build_without_cuda_pytorch_says_why():
    if torch.version.cuda is not None:
        pytest.skip("this PyTorch has CUDA")
    with pytest.raises(RuntimeError, match="no CUDA support"):
        extension.build("cuda")


def test_info_does_not_wait_for_a_compile_in_another_thread(monkeypatch):
    from kernels import extension

    monkeypatch.setattr(extension, "_modules", {})  # nothing loaded yet in this process
    with extension._lock:  # held as a compiling job would hold it
        info = extension.implementation_info()
    assert info["cpu"] == "reference" and "being loaded or compiled" in info["cpu_reason"]
