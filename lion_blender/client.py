"""The add-on's side of the backend process: start it, talk to it, notice when it dies.

No bpy here, so this runs and is tested anywhere. A Request is a small future: Blender's
timer polls `done()` and `progress`, background mode calls `wait()`. Frames are read on a
thread; stderr is drained on another and its tail kept for error reports.
"""
import collections
import itertools
import os
import re
import subprocess
import threading

from .wire import protocol

STDERR_TAIL_LINES = 60


class BackendError(Exception):
    """The backend could not do what was asked; the message is written for the artist."""

    def __init__(self, message, code="internal", traceback=""):
        super().__init__(message)
        self.code = code
        self.traceback = traceback


class Request:
    """One request in flight: progress while it runs, then a result or an error."""

    def __init__(self, request_id, op):
        self.id = request_id
        self.op = op
        self.progress = None  # (step, total, stage) of the latest progress event
        self._done = threading.Event()
        self._result = None
        self._error = None

    def done(self):
        return self._done.is_set()

    def wait(self, timeout=None):
        """Block until the reply; return (header, arrays) or raise BackendError."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"backend did not answer {self.op!r} within {timeout} s")
        return self.result()

    def result(self):
        """(header, arrays) of a finished request; raises its BackendError if it failed."""
        if not self.done():
            raise RuntimeError("request is still running")
        if self._error is not None:
            raise self._error
        return self._result

    def _finish(self, result=None, error=None):
        self._result, self._error = result, error
        self._done.set()


class _Connection:
    """One backend process with its pending requests and the tail of its stderr."""

    def __init__(self, process):
        self.process = process
        self.pending = {}
        self.stderr_tail = collections.deque(maxlen=STDERR_TAIL_LINES)
        self.stderr_closed = threading.Event()
        self.lock = threading.Lock()

    def alive(self):
        return self.process.poll() is None

    def fail_pending(self, error):
        with self.lock:
            pending, self.pending = list(self.pending.values()), {}
        for request in pending:
            request._finish(error=error)


class BackendClient:
    """Owns one backend process at a time; starts a fresh one when a request finds none alive.

    python: the backend environment's interpreter (it must have torch).
    extension_dir: the folder holding backend/ and kernels/, put on the child's PYTHONPATH.
    work_dir: where the backend may write (caches, compiled kernels); also its working folder.
    env: extra environment variables for the child (LION_DEVICE, LION_MODEL_DIRS, ...).
    """

    def __init__(self, python, extension_dir, work_dir, env=None):
        # The child runs in work_dir: a relative interpreter path must not change meaning there.
        self.python = os.path.abspath(python) if python else python
        self.extension_dir = extension_dir
        self.work_dir = work_dir
        self.env = dict(env or {})
        self.hello = None  # the reply of the last successful hello
        self.last_error = ""
        self._connection = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    # -- lifecycle ---------------------------------------------------------------------------

    def is_running(self):
        return self._connection is not None and self._connection.alive()

    @property
    def state(self):
        """'stopped', 'starting' (running, no hello yet), 'ready' or 'failed'."""
        if self.is_running():
            return "ready" if self.hello is not None else "starting"
        return "failed" if self.last_error else "stopped"

    def start(self):
        """Start the backend process if none is running."""
        with self._lock:
            self._ensure_running()

    def _ensure_running(self):
        if self.is_running():
            return self._connection
        if not self.python or not os.path.isfile(self.python):
            self.last_error = f"The backend Python was not found at {self.python!r}. Set it in the add-on preferences."
            raise BackendError(self.last_error, code="no_backend")
        os.makedirs(self.work_dir, exist_ok=True)
        env = dict(os.environ)
        # Blender's own Python settings must not leak into the backend's interpreter.
        for name in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONUSERBASE"):
            env.pop(name, None)
        env.update(self.env)
        env["PYTHONPATH"] = self.extension_dir
        env["PYTHONUNBUFFERED"] = "1"
        # Bytecode caches go to the work folder: the installed extension folder stays untouched.
        env["PYTHONPYCACHEPREFIX"] = os.path.join(self.work_dir, "pycache")
        env.setdefault("LION_CACHE_DIR", self.work_dir)
        try:
            process = subprocess.Popen(
                [self.python, "-m", "backend.serve"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=self.work_dir, env=env,
            )
        except OSError as exc:
            self.last_error = f"Could not start the backend Python {self.python!r}: {exc}"
            raise BackendError(self.last_error, code="no_backend") from None
        connection = _Connection(process)
        self._connection, self.hello, self.last_error = connection, None, ""
        threading.Thread(target=self._read_replies, args=(connection,), name="lion-replies", daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(connection,), name="lion-stderr", daemon=True).start()
        return connection

    def stop(self, timeout=5.0):
        """Ask the backend to shut down; kill it if it does not within `timeout` seconds."""
        with self._lock:
            connection, self._connection = self._connection, None
        self.hello, self.last_error = None, ""
        if connection is None:
            return
        process = connection.process
        if process.poll() is None:
            try:
                protocol.write_frame(process.stdin, {"id": "shutdown", "op": "shutdown"})
                process.stdin.close()
            except (OSError, ValueError):
                pass
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        connection.fail_pending(BackendError("The backend was stopped.", code="stopped"))

    def restart(self):
        self.stop()
        self.start()

    def stderr_tail(self):
        """The last lines the current (or last) backend process wrote to its log."""
        connection = self._connection
        return "\n".join(connection.stderr_tail) if connection else ""

    # -- requests ----------------------------------------------------------------------------

    def request(self, op, params=None, arrays=None):
        """Send a request (starting the backend if needed) and return its Request at once."""
        request = Request(next(self._ids), op)
        frame = protocol.encode_frame({**(params or {}), "id": request.id, "op": op}, arrays)
        with self._lock:
            connection = self._ensure_running()
            with connection.lock:
                connection.pending[request.id] = request
            try:
                connection.process.stdin.write(frame)
                connection.process.stdin.flush()
            except (OSError, ValueError):
                pass  # the reply reader notices the death and fails the request with the reason
        return request

    def cancel(self, request):
        """Ask the backend to stop `request` at its next step (no-op if it is finished)."""
        if not request.done() and self.is_running():
            self.request("cancel", {"target": request.id})

    def say_hello(self, timeout=120.0):
        """Start the backend if needed and return its hello reply (versions, devices, models)."""
        return self.request("hello").wait(timeout)[0]

    # -- reader threads ----------------------------------------------------------------------

    def _read_replies(self, connection):
        reason = ""
        while True:
            try:
                frame = protocol.read_frame(connection.process.stdout, skip_oversized=False)
            except (protocol.ProtocolError, protocol.FrameError, OSError, ValueError) as exc:
                frame, reason = None, f"Unreadable reply from the backend: {exc}"
            if frame is None:
                break
            self._dispatch(connection, *frame)
        process = connection.process
        if reason:
            process.kill()  # it speaks garbage: nothing it says can be trusted any more
        try:
            code = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        connection.stderr_closed.wait(timeout=2)  # its last lines say most about a death
        tail = "\n".join(connection.stderr_tail)
        missing = re.search(r"No module named '([A-Za-z0-9_]+)", tail)
        if missing:
            reason = (f"The backend Python {self.python} lacks the package {missing.group(1)!r} (it needs torch, "
                      "numpy and the rest of requirements/backend.txt). Choose an environment that has them "
                      "in the add-on preferences (python3 build.py setup makes one).")
        message = f"{reason or f'The backend stopped unexpectedly (exit code {code}).'}\n{tail}".strip()
        if connection is self._connection:  # not a stop() we asked for
            self.last_error, self.hello = message, None
        connection.fail_pending(BackendError(message, code="backend_died"))

    def _dispatch(self, connection, header, arrays):
        kind = header.get("type")
        with connection.lock:
            request = connection.pending.get(header.get("id"))
            if request is not None and kind != "progress":
                del connection.pending[request.id]
        if request is None:
            if kind in ("error", "protocol_error"):  # about no request of ours: keep it for the panel
                self.last_error = header.get("message", "")
        elif kind == "progress":
            request.progress = (header.get("step", 0), header.get("total", 0), header.get("stage", ""))
        elif kind == "error":
            request._finish(error=BackendError(
                header.get("message", "unknown error"), header.get("code", "internal"), header.get("traceback", "")))
        else:
            if request.op == "hello":
                self.hello = header
            request._finish(result=(header, arrays))

    def _read_stderr(self, connection):
        for raw in connection.process.stderr:
            connection.stderr_tail.append(raw.decode("utf-8", "replace").rstrip())
        connection.stderr_closed.set()
