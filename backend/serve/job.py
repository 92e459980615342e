"""What a request may end in besides a result, and what a running op may do besides computing."""


class RequestError(Exception):
    """The request cannot be served as asked; the message tells the artist why."""


class Cancelled(Exception):
    """The job was cancelled by a `cancel` request."""


class JobContext:
    """Reports progress and notices cancel. Ops call `progress` at least once per diffusion step,
    so a cancel takes effect within one step."""

    def __init__(self, cancelled_event, send_event):
        self._cancelled = cancelled_event
        self._send_event = send_event

    def check_cancelled(self):
        if self._cancelled.is_set():
            raise Cancelled()

    def progress(self, step, total, stage):
        """Report that `step` of `total` units of `stage` are done, then honour a pending cancel."""
        self._send_event({"type": "progress", "step": int(step), "total": int(total), "stage": str(stage)})
        self.check_cancelled()
