"""hello: what this backend is (versions, devices, point-voxel kernels, models)."""
import platform

from backend import __version__, devices, model_store, protocol
from backend.serve import fields


def kernel_info():
    """Which point-voxel operators run on each device (compiled or the PyTorch reference), and why."""
    try:
        from kernels import ops
    except ImportError as exc:
        return {"active": "unavailable", "reason": f"kernels package not importable: {exc}"}
    return ops.implementation_info()


def run(session, params, arrays, context):
    import torch

    fields.parse("hello", params)
    models, skipped = model_store.scan_models()
    return {
        "protocol_version": protocol.PROTOCOL_VERSION,
        "backend_version": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "devices": devices.available_devices(),
        "device": str(session.device),
        "device_note": session.device_note,
        "kernels": kernel_info(),
        "models": models,
        "skipped_models": skipped,
    }, None
