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
    """[{"name", "path", "categories"}] of the LION checkpoints in the model folders, in search
    order; "categories" are those its shape prior can be asked for (empty: unconditional)."""
    return scan_models()[0]


def scan_models():
    """(models, skipped): the models as `list_models` gives them, and [{"path", "reason"}] of the
    files in the model folders that end in .safetensors but cannot be used as a model. Shape As
    Points networks and other safetensors files of this project are neither: they are passed
    over in silence. A damaged file is skipped and named; the other models stay usable.
    """
    from backend.checkpoint import NotALionCheckpoint, read_checkpoint_info

    found, skipped, seen = [], [], set()
    for folder in model_folders():
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            stem = name[: -len(MODEL_SUFFIX)]
            if not name.endswith(MODEL_SUFFIX) or name.endswith(SAP_NETWORK_SUFFIX) or stem in seen:
                continue
            try:
                config, _ = read_checkpoint_info(path)
            except NotALionCheckpoint:
                continue
            except (ValueError, OSError) as error:
                skipped.append({"path": path, "reason": str(error)})
                _warn_once(path, str(error))
                continue
            seen.add(stem)
            found.append({"name": stem, "path": path, "categories": list(config.shape_prior.categories)})
    return found, skipped


_warned = set()


def _warn_once(path, reason):
    if path not in _warned:
        _warned.add(path)
        log.warning("skipping model file %s: %s", path, reason)


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


class LastLoaded:
    """Keeps the last thing loaded from a file on `device`: another path, or the same file
    changed on disk (a retrained model), loads afresh after dropping the old one (memory is
    finite). load(path, device) does the loading; `what` names it in the log."""

    def __init__(self, device, load, what):
        self.device, self._load, self._what = device, load, what
        self._key = None
        self._value = None

    def get(self, path):
        key = (path, os.path.getmtime(path))
        if key != self._key:
            self._value = None
            log.info("loading %s %s onto %s", self._what, path, self.device)
            self._value, self._key = self._load(path, self.device), key
        return self._value


def _load_model(path, device):
    from backend.checkpoint import load_model

    return load_model(path, device)


def _load_sap_network(path, device):
    from backend.sap.network import load_network

    return load_network(path, device)


def sap_network_cache(device):
    """The last used Shape As Points network, by path."""
    return LastLoaded(device, _load_sap_network, "Shape As Points network")


class ModelCache:
    """The last used LION model, by name."""

    def __init__(self, device):
        self._files = LastLoaded(device, _load_model, "model")

    def get(self, name):
        """(model name, LionModel in eval mode, metadata) for `name` (None: the default model)."""
        record = resolve_model(name)
        model, metadata = self._files.get(record["path"])
        return record["name"], model, metadata
