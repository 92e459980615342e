"""Checkpoints: one safetensors file with the weights, the model config and metadata.

The file is a plain safetensors file (tensors by name). Its string header holds:
- "format": "lion-blender-checkpoint" and "format_version": "1";
- "config": the `LionConfig` as JSON, so the networks can be rebuilt exactly;
- "metadata": a JSON object, e.g. {"normalization": {...}, "dataset": "...", "step": 1234,
  "voxel_encoder": false}; "voxel_encoder" true means the file also holds the encoders
  fine-tuned on voxel guides (`voxel_encoder.*` tensors). Files without the flag have none.

Loading parses JSON and raw tensor bytes only; it never unpickles or executes anything.
Writes go to a temporary file in the same folder that then replaces the target, so a crash
never leaves a half-written checkpoint behind.
"""
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from backend.config import LionConfig

FORMAT = "lion-blender-checkpoint"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024 * 1024  # a safetensors header: names, shapes, offsets and our metadata


class NotALionCheckpoint(ValueError):
    """The file is some other safetensors file (a Shape As Points network, say), not a LION model."""


@dataclass
class Checkpoint:
    """What `load_checkpoint` returns: tensors by name, the config and the metadata dict."""

    tensors: Dict[str, torch.Tensor]
    config: LionConfig
    metadata: dict


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(path, tensors: Dict[str, torch.Tensor], config: LionConfig,
                    metadata: Optional[dict] = None) -> None:
    """Write `tensors` (name -> tensor of any shape/dtype) with `config` and JSON-able `metadata`."""
    if not isinstance(config, LionConfig):
        raise ValueError(f"config must be a LionConfig, got {type(config).__name__}")
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise ValueError("tensors must be a dict of name -> torch.Tensor")
    metadata = {} if metadata is None else metadata
    try:
        metadata_json = json.dumps(metadata, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise ValueError(f"metadata must be JSON-serializable: {error}") from error
    header = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": config.to_json(),
        "metadata": metadata_json,
    }
    # safetensors wants contiguous CPU tensors that share no storage.
    payload = {name: value.detach().to("cpu").contiguous().clone() for name, value in tensors.items()}
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".checkpoint-", suffix=".tmp", dir=folder)
    os.close(handle)
    try:
        save_file(payload, temporary, metadata=header)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; a model file is for sharing
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _read_header(path) -> dict:
    """The string metadata of a safetensors file, read from its JSON header."""
    with open(path, "rb") as f:
        size_bytes = f.read(8)
        if len(size_bytes) != 8:
            raise ValueError(f"path {path} is not a safetensors checkpoint (file too short)")
        size = int.from_bytes(size_bytes, "little")
        if size > os.path.getsize(path) - 8:
            raise ValueError(f"path {path} is not a safetensors checkpoint (bad header size)")
        if size > MAX_HEADER_BYTES:
            raise ValueError(f"path {path} has a {size}-byte header; a checkpoint's is under {MAX_HEADER_BYTES}")
        try:
            header = json.loads(f.read(size))
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            raise ValueError(f"path {path} is not a safetensors checkpoint ({str(error)[:200]})") from None
    if not isinstance(header, dict):
        raise ValueError(f"path {path} is not a safetensors checkpoint (its header is not a JSON object)")
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError(f"path {path} has malformed metadata (safetensors metadata maps names to strings)")
    return metadata


def read_checkpoint_info(path) -> Tuple[LionConfig, dict]:
    """(config, metadata) of a checkpoint without loading its tensors."""
    if not os.path.isfile(path):
        raise ValueError(f"path {path} does not exist or is not a file")
    header = _read_header(path)
    if header.get("format") != FORMAT:
        raise NotALionCheckpoint(f"path {path} is not a LION checkpoint of this project (format {header.get('format')!r})")
    version = header.get("format_version", "0")
    if not version.isdigit():
        raise ValueError(f"path {path} has an unreadable format version {version[:20]!r}")
    if int(version) > FORMAT_VERSION:
        raise ValueError(f"path {path} has format version {version}, newer than {FORMAT_VERSION}")
    if "config" not in header:
        raise ValueError(f"path {path} is a LION checkpoint without its config")
    try:
        config = LionConfig.from_json(header["config"])
        metadata = json.loads(header.get("metadata", "{}"))
    except (ValueError, TypeError, RecursionError) as error:  # ValueError: also a config that does not validate
        raise ValueError(f"path {path} has an unreadable config or metadata: {str(error)[:300]}") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"path {path} has metadata that is not a JSON object")
    return config, metadata


def load_checkpoint(path, device="cpu") -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint`; tensors land on `device`."""
    config, metadata = read_checkpoint_info(path)
    try:
        tensors = load_file(path, device=str(device))
    except SafetensorError as error:
        raise ValueError(f"path {path} has unreadable tensors: {error}") from error
    return Checkpoint(tensors, config, metadata)


def save_model(path, model, dataset: Optional[str] = None, step: Optional[int] = None,
               extra: Optional[dict] = None) -> None:
    """Save a `LionModel`: its weights, config, normalization and the given metadata.

    extra: more JSON-able metadata (merged in; may not override normalization/dataset/step or
    voxel_encoder, which records whether the model carries a voxel-guide encoder).
    """
    metadata = dict(extra or {})
    clash = {"normalization", "dataset", "step", "voxel_encoder"} & set(metadata)
    if clash:
        raise ValueError(f"extra must not contain {sorted(clash)}; pass them as arguments")
    metadata["normalization"] = model.normalization.to_json() if model.normalization is not None else None
    metadata["dataset"] = dataset
    metadata["step"] = step
    metadata["voxel_encoder"] = model.voxel_encoder is not None
    save_checkpoint(path, model.state_dict(), model.config, metadata)


def save_half_precision(source, destination) -> None:
    """Copy the checkpoint at `source` to `destination` with float32 tensors stored as float16
    (half the size; loading casts them back). Config and metadata are kept; the metadata
    records "stored_dtype": "float16"."""
    checkpoint = load_checkpoint(source)
    tensors = {name: value.half() if value.dtype == torch.float32 else value
               for name, value in checkpoint.tensors.items()}
    too_large = [name for name, value in tensors.items() if value.is_floating_point() and not value.isfinite().all()]
    if too_large:
        raise ValueError(f"{source}: tensors overflow float16: {too_large[:5]}")
    save_checkpoint(destination, tensors, checkpoint.config, {**checkpoint.metadata, "stored_dtype": "float16"})


def load_model(path, device="cpu"):
    """Rebuild the `LionModel` saved at `path`, in eval mode on `device`.

    Returns (model, metadata): metadata is the checkpoint's metadata dict; the model's
    `normalization` is rebuilt from it (None when the checkpoint records none), and its
    `voxel_encoder` is loaded when the metadata says the file holds one.
    """
    from backend.data.normalization import normalization_from_json
    from backend.models import LionModel

    checkpoint = load_checkpoint(path, device)
    record = checkpoint.metadata.get("normalization")
    normalization = normalization_from_json(record) if record is not None else None
    # Built on the meta device: initializing weights that are overwritten at once is wasted time.
    with torch.device("meta"):
        model = LionModel(checkpoint.config, normalization,
                          with_voxel_encoder=bool(checkpoint.metadata.get("voxel_encoder", False)))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(checkpoint.tensors))
    unexpected = sorted(set(checkpoint.tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(f"path {path} does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    tensors = {}
    for name, value in checkpoint.tensors.items():
        if value.shape != expected[name].shape:
            raise ValueError(f"path {path}: tensor {name} has shape {tuple(value.shape)}, "
                             f"the config needs {tuple(expected[name].shape)}")
        # Models stored in half precision (save_half_precision) compute in float32.
        tensors[name] = value.to(expected[name].dtype) if value.is_floating_point() else value
    model.load_state_dict(tensors, assign=True)
    return model.eval(), checkpoint.metadata
