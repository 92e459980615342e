"""What the backend process keeps between requests: its device, the last used model and the
last used Shape As Points network. One Session per process (the server's, or the command
line's); ops receive it and keep nothing of their own."""
import os

from backend import devices, model_store
from backend.serve.job import RequestError


class Session:
    """The torch device (LION_DEVICE: auto/cuda/mps/cpu, resolved on first use) and the caches
    of loaded files on it."""

    def __init__(self, device_choice=None):
        self._device_choice = device_choice or os.environ.get("LION_DEVICE", "auto")
        self._device = self._device_note = None
        self._models = self._sap_networks = None

    @property
    def device(self):
        if self._device is None:
            try:
                self._device, self._device_note = devices.resolve_device(self._device_choice)
            except ValueError as exc:
                raise RequestError(f"LION_DEVICE: {exc}") from None
        return self._device

    @property
    def device_note(self):
        self.device  # noqa: B018  (resolves it)
        return self._device_note

    def model(self, name):
        """(model name, LionModel in eval mode, metadata) for `name` (None: the default model)."""
        if self._models is None:
            self._models = model_store.ModelCache(self.device)
        try:
            return self._models.get(name)
        except ValueError as exc:
            raise RequestError(str(exc)) from None

    def sap_network(self, path):
        """The Shape As Points network stored at `path`, loaded once."""
        if self._sap_networks is None:
            self._sap_networks = model_store.sap_network_cache(self.device)
        return self._sap_networks.get(path)
