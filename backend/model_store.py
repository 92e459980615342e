"""Where models are found, and the one loaded model kept in memory between requests."""
import logging
import os

log = logging.getLogger("lion.models")

BUNDLED_MODELS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models")
MODEL_SUFFIX = ".safetensors"
SAP_NETWORK_SUFFIX = "-sap.safetensors"  # beside model NAME.safetensors: its Shape As Points network


def model_folders():
    """Folders searched for models: those in LION_MODEL_DIRS, then the bundled models/ folder."""
    folders = [p for p in os.environ.get("LION_MODEL_DIRS", "").split(os.pathsep) if p]
    folders.append(BUNDLED_MODELS_DIR)
    return folders


def list_models():
    """[{"name", "path"}] of the LION checkpoints in the model folders, in search order.

    A file is a LION model when its header says so; SAP networks and other safetensors files
    in the same folders are skipped.
    """
    from backend.checkpoint import read_checkpoint_info

    found, seen = [], set()
    for folder in model_folders():
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            stem = name[: -len(MODEL_SUFFIX)]
            if not name.endswith(MODEL_SUFFIX) or stem in seen:
                continue
            try:
                read_checkpoint_info(path)
            except (ValueError, OSError):
                continue
            seen.add(stem)
            found.append({"name": stem, "path": path})
    return found


def resolve_model(name):
    """The path of model `name` (None: the first model found); ValueError when there is none."""
    models = list_models()
    if not models:
        raise ValueError("No LION model was found. Put a model (.safetensors) in the model folder set in the "
                         f"add-on preferences, or in {BUNDLED_MODELS_DIR}.")
    if name is None:
        return models[0]
    for model in models:
        if model["name"] == name:
            return model
    raise ValueError(f"Unknown model {name!r}; available: {', '.join(m['name'] for m in models)}")


def sap_network_path(name):
    """The Shape As Points network shipped beside model `name` (None: the default model), or
    None when that model has none or no model is installed: reconstruction then estimates
    normals instead."""
    try:
        record = resolve_model(name)
    except ValueError:
        return None
    path = record["path"][: -len(MODEL_SUFFIX)] + SAP_NETWORK_SUFFIX
    return path if os.path.isfile(path) else None


class SapNetworkCache:
    """Keeps the last used Shape As Points network on its device."""

    def __init__(self, device):
        self.device = device
        self._key = None
        self._network = None

    def get(self, path):
        from backend.sap.network import load_network

        key = (path, os.path.getmtime(path))
        if key != self._key:
            log.info("loading Shape As Points network %s onto %s", path, self.device)
            self._network, self._key = load_network(path, self.device), key
        return self._network


class ModelCache:
    """Keeps the last used model on its device; loading another replaces it (memory is finite)."""

    def __init__(self, device):
        self.device = device
        self._key = None
        self._entry = None

    def get(self, name):
        """(model name, LionModel in eval mode, metadata) for `name` (None: the default model)."""
        from backend.checkpoint import load_model

        record = resolve_model(name)
        key = (record["path"], os.path.getmtime(record["path"]))  # a retrained file is reloaded
        if key != self._key:
            self._entry = None  # free the old model before loading the new one
            log.info("loading model %s from %s onto %s", record["name"], record["path"], self.device)
            model, metadata = load_model(record["path"], self.device)
            self._key, self._entry = key, (record["name"], model, metadata)
        return self._entry
