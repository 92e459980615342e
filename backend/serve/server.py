"""The backend process: `python -m backend.serve`, owned by the Blender add-on.

Requests arrive as frames (backend/protocol.py) on stdin; progress events and replies leave as
frames on stdout. Nothing else may reach stdout: print() and stray library output are sent to
stderr, which carries the human log. No network port is opened.

The main thread reads frames, and answers the control ops (`hello`, `cancel`, `shutdown`)
itself, so they are answered while a job runs; one worker thread runs the jobs in arrival
order. Whatever arrives, the process lives on and stays in step: a frame whose id can be read
gets exactly one reply (an `error` when it is unusable), one whose id cannot gets a
`protocol_error` event. Only a stream that ends in the middle of a frame ends it. The queue is
bounded, in requests and in bytes, so a flood of large frames cannot exhaust memory.
"""
import logging
import os
import queue
import sys
import threading
import traceback

from backend import __version__, protocol
from backend.serve import ops
from backend.serve.job import Cancelled, JobContext, RequestError
from backend.serve.session import Session

log = logging.getLogger("lion.serve")

# Ops answered by the reading thread itself, never queued behind a running job.
CONTROL_OPS = ("hello", "cancel", "shutdown")
# Requests waiting behind the running job: at most this many, holding at most this many bytes
# of arrays. More is refused ("busy") rather than held in memory.
MAX_QUEUED_JOBS = 8
MAX_QUEUED_BYTES = 512 * 1024 * 1024


class Job:
    """One queued request, with the flag its handler checks at every step."""

    def __init__(self, request_id, op, params, arrays):
        self.request_id = request_id
        self.op = op
        self.params = params
        self.arrays = arrays
        self.cancelled = threading.Event()
        self.size = 0  # bytes of arrays, counted against the queue's limit while it waits


class Server:
    def __init__(self, reader, writer, session=None):
        self._reader = reader
        self._writer = writer
        self._session = session or Session()
        self._write_lock = threading.Lock()
        self._jobs = queue.Queue()
        self._pending = {}  # request id -> Job, queued or running
        self._queued_bytes = 0  # arrays of the jobs not yet started
        self._pending_lock = threading.Lock()
        self._worker = threading.Thread(target=self._work, name="lion-worker", daemon=True)

    def run(self):
        """Serve until shutdown, end of input, or a broken stream; return the exit code."""
        self._worker.start()
        try:
            return self._read_loop()
        finally:
            self._cancel_all()
            self._jobs.put(None)
            self._worker.join(timeout=5)

    def _read_loop(self):
        while True:
            try:
                frame = protocol.read_frame(self._reader)
            except protocol.ProtocolError as exc:
                log.error("closing: %s", exc)
                self._send_error(None, "protocol", str(exc))
                return 2
            except protocol.FrameError as exc:
                self._refuse(exc.request_id, str(exc))
                continue
            if frame is None:
                log.info("input closed; exiting")
                return 0
            request_id = protocol.readable_id(frame[0].get("id"))
            try:
                if self._accept(*frame) == "shutdown":
                    return 0
            except Exception as exc:  # a bug: report it, keep reading
                log.exception("accepting a request failed")
                self._send_error(request_id, "internal", f"{type(exc).__name__}: {exc}", traceback.format_exc())

    def _accept(self, header, arrays):
        request_id, op = protocol.readable_id(header.pop("id", None)), header.pop("op", None)
        if request_id is None:
            self._refuse(None, f"a request needs an 'id': a string of at most {protocol.MAX_ID_CHARS} characters "
                               f"or an integer of magnitude below 2**53")
        elif not isinstance(op, str):
            self._refuse(request_id, f"'op' must be a string naming an op, got {type(op).__name__}")
        elif op == "shutdown":
            self._send({"id": request_id, "type": "result"})
            return "shutdown"
        elif op == "cancel":
            target = header.get("target")
            if target is not None and protocol.readable_id(target) is None:
                self._refuse(request_id, "cancel 'target' must be the id of a request (a string or an integer)")
            else:
                self._send({"id": request_id, "type": "result", "cancelled": self._cancel(target)})
        elif op == "hello":
            self._run_job(Job(request_id, op, header, arrays))
        elif op not in ops.OPS:
            known = ", ".join(sorted({*ops.OPS, *CONTROL_OPS}))
            self._refuse(request_id, f"unknown op {op[:100]!r}; known ops: {known}")
        else:
            self._enqueue(Job(request_id, op, header, arrays))
        return None

    def _enqueue(self, job):
        size = sum(array.nbytes for array in job.arrays.values())
        with self._pending_lock:
            queued = len(self._pending)
            if job.request_id in self._pending:
                refusal = f"a request with id {job.request_id!r} is already queued or running; ids must be unique"
            elif queued > MAX_QUEUED_JOBS or self._queued_bytes + size > MAX_QUEUED_BYTES:
                refusal = (f"busy: {queued} requests are waiting or running (at most {MAX_QUEUED_JOBS} wait, "
                           f"with {MAX_QUEUED_BYTES // 2**20} MB of arrays); try again when they finish")
            else:
                refusal, job.size = None, size
                self._pending[job.request_id] = job
                self._queued_bytes += size
        if refusal:
            self._refuse(job.request_id, refusal)
        else:
            self._jobs.put(job)

    def _work(self):
        while True:
            job = self._jobs.get()
            if job is None:
                return
            with self._pending_lock:
                self._queued_bytes -= job.size
            try:
                self._run_job(job)
            finally:
                with self._pending_lock:
                    self._pending.pop(job.request_id, None)

    def _run_job(self, job):
        context = JobContext(job.cancelled, lambda event: self._send({"id": job.request_id, **event}))
        try:
            context.check_cancelled()
            result, arrays = ops.run(self._session, job.op, job.params, job.arrays, context)
        except Cancelled:
            self._send_error(job.request_id, "cancelled", "cancelled")
        except RequestError as exc:
            self._send_error(job.request_id, "bad_request", str(exc))
        except Exception as exc:  # a bug or a resource failure: report it, keep serving
            log.exception("op %s failed", job.op)
            self._send_error(job.request_id, "internal", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        else:
            self._send({"id": job.request_id, "type": "result", **result}, arrays)

    def _cancel(self, target):
        """Flag the job `target` (or every pending job when None); return whether any was found."""
        with self._pending_lock:
            jobs = list(self._pending.values()) if target is None else [self._pending.get(target)]
        jobs = [job for job in jobs if job is not None]
        for job in jobs:
            job.cancelled.set()
        return bool(jobs)

    def _cancel_all(self):
        self._cancel(None)

    def _refuse(self, request_id, message):
        """One frame that cannot be served: an error reply to its request, or a protocol_error
        event when it has no id to answer to."""
        if request_id is None:
            self._send({"id": None, "type": "protocol_error", "message": message})
        else:
            self._send_error(request_id, "bad_request", message)

    def _send_error(self, request_id, code, message, trace=None):
        self._send({"id": request_id, "type": "error", "code": code, "message": message, "traceback": trace or ""})

    def _send(self, header, arrays=None):
        try:
            frame = protocol.encode_frame(header, arrays)
        except (TypeError, ValueError) as exc:  # a result that JSON cannot carry (NaN, say): a bug
            log.exception("reply to %r cannot be encoded", header.get("id"))
            frame = protocol.encode_frame({"id": header.get("id"), "type": "error", "code": "internal",
                                           "message": f"the reply could not be encoded: {exc}", "traceback": ""})
        with self._write_lock:
            try:
                self._writer.write(frame)
                self._writer.flush()
            except (BrokenPipeError, ValueError):
                log.info("output closed; dropping reply to %r", header.get("id"))


def main():
    # Frames get a private duplicate of stdout; file descriptor 1 itself is pointed at stderr,
    # so print(), library chatter and child processes (a kernel compile) cannot corrupt frames.
    sys.stdout.flush()
    writer = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    reader = sys.stdin.buffer
    logging.basicConfig(
        level=os.environ.get("LION_LOG_LEVEL", "INFO"),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log.info("backend %s serving on stdin/stdout (pid %d)", __version__, os.getpid())
    return Server(reader, writer).run()
