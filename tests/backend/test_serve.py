"""The backend server as a real process: handshake, bad input, and clean ends of the stream."""
import json
import os
import struct
import subprocess
import sys
import threading

import numpy as np
import pytest

from backend import protocol

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT_S = 60


class ServerProcess:
    def __init__(self, tmp_path, env=None):
        env = dict(os.environ, PYTHONPATH=REPO_ROOT, LION_CACHE_DIR=str(tmp_path), **(env or {}))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "backend.serve"], cwd=tmp_path, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )

    def send(self, header, arrays=None):
        self.send_raw(protocol.encode_frame(header, arrays))

    def send_raw(self, data):
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def reply(self):
        """The next frame from the server; fails the test instead of hanging."""
        box = {}
        reader = threading.Thread(target=lambda: box.update(frame=protocol.read_frame(self.process.stdout)))
        reader.start()
        reader.join(TIMEOUT_S)
        assert not reader.is_alive(), "the server did not answer in time"
        return box["frame"]

    def ask(self, header, arrays=None):
        self.send(header, arrays)
        return self.reply()

    def exit_code(self):
        return self.process.wait(TIMEOUT_S)

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            stream.close()


@pytest.fixture
def server(tmp_path):
    process = ServerProcess(tmp_path)
    yield process
    process.close()


def assert_alive(server):
    header, _ = server.ask({"id": "ping", "op": "hello"})
    assert header["type"] == "result" and header["id"] == "ping"


def test_hello_describes_the_backend(server):
    header, arrays = server.ask({"id": 1, "op": "hello"})
    assert header["type"] == "result" and header["id"] == 1
    assert header["protocol_version"] == protocol.PROTOCOL_VERSION
    assert header["device"] in [d["name"] for d in header["devices"]]
    assert header["devices"][-1]["name"] == "cpu"
    assert {"torch", "backend_version", "python", "kernels", "models"} <= set(header)
    assert arrays == {}


def test_shutdown_replies_then_exits_cleanly(server):
    header, _ = server.ask({"id": 2, "op": "shutdown"})
    assert header == {"id": 2, "type": "result"}
    assert server.exit_code() == 0


def test_closed_input_ends_the_server(server):
    server.process.stdin.close()
    assert server.exit_code() == 0


def test_unknown_op_is_an_error_naming_the_known_ops(server):
    header, _ = server.ask({"id": 3, "op": "make_coffee"})
    assert header["type"] == "error" and header["code"] == "bad_request" and header["id"] == 3
    assert "make_coffee" in header["message"] and "hello" in header["message"]
    assert_alive(server)


def raw_frame(header_bytes, payload=b""):
    return struct.pack("<IQ", len(header_bytes), len(payload)) + header_bytes + payload


@pytest.mark.parametrize("request_id", [None, float("nan"), float("inf"), [1], {"a": 1}, True, 2 ** 60, "x" * 500])
def test_request_without_a_usable_id_gets_a_protocol_error_event(server, request_id):
    body = json.dumps({"op": "hello", **({"id": request_id} if request_id is not None else {})}).encode()
    server.send_raw(raw_frame(body))
    header, _ = server.reply()
    assert header["type"] == "protocol_error" and header["id"] is None and "id" in header["message"]
    assert_alive(server)


def test_invalid_json_is_a_protocol_error_and_the_server_lives(server):
    server.send_raw(raw_frame(b"{not json", b"bytes that follow it"))
    header, _ = server.reply()
    assert header["type"] == "protocol_error" and "JSON" in header["message"]
    assert_alive(server)


def test_wrong_array_byte_count_is_an_error_for_that_request(server):
    descriptor = {"name": "vertices", "dtype": "float32", "shape": [10, 3], "nbytes": 12}
    server.send_raw(raw_frame(json.dumps({"id": 4, "op": "hello", "arrays": [descriptor]}).encode(), b"\0" * 12))
    header, _ = server.reply()
    assert header["type"] == "error" and header["id"] == 4 and "vertices" in header["message"]
    assert_alive(server)


@pytest.mark.parametrize("fields, message", [
    ({"op": ["hello"]}, "op"), ({"op": {"a": 1}}, "op"), ({"op": None}, "op"),
    ({"op": "cancel", "target": ["a"]}, "target"), ({"op": "cancel", "target": {"a": 1}}, "target"),
    ({"op": "x" * 100_000}, "unknown op"),
])
def test_wrong_op_or_target_types_are_errors_for_that_request(server, fields, message):
    header, _ = server.ask({"id": 11, **fields})
    assert header["type"] == "error" and header["id"] == 11 and message in header["message"]
    assert len(header["message"]) < 1000
    assert_alive(server)


def test_oversized_frame_is_skipped_with_a_protocol_error_and_the_server_lives(server):
    server.send_raw(struct.pack("<IQ", protocol.MAX_HEADER_BYTES + 1, 0) + b" " * (protocol.MAX_HEADER_BYTES + 1))
    header, _ = server.reply()
    assert header["type"] == "protocol_error" and "over the limits" in header["message"]
    assert_alive(server)


def test_hello_is_answered_while_a_job_runs_and_a_duplicate_id_is_refused(server):
    server.send({"id": "long", "op": "sample", "count": 1, "sampler": "ddpm", "seed": 1})
    header, _ = server.reply()  # the first step's progress: the job is running
    assert header["id"] == "long" and header["type"] == "progress", header
    replies = []
    server.send({"id": "again", "op": "hello"})
    server.send({"id": "long", "op": "sample", "count": 1})
    server.send({"id": "stop", "op": "cancel", "target": "long"})
    while len([r for r in replies if r["type"] != "progress"]) < 4:
        replies.append(server.reply()[0])
    final = [r for r in replies if r["type"] != "progress"]
    assert [(r["id"], r["type"]) for r in final] == [("again", "result"), ("long", "error"), ("stop", "result"),
                                                      ("long", "error")]
    assert "already queued or running" in final[1]["message"]
    assert final[2]["cancelled"] is True and final[3]["code"] == "cancelled"
    assert_alive(server)


def test_truncated_frame_gets_an_error_then_a_clean_close(server):
    frame = protocol.encode_frame({"id": 5, "op": "hello"}, {"a": np.zeros(1000, np.float32)})
    server.send_raw(frame[: len(frame) // 2])
    server.process.stdin.close()
    header, _ = server.reply()
    assert header["type"] == "error" and "ended" in header["message"]
    assert server.exit_code() == 2


def test_cancel_of_nothing_running_says_so(server):
    header, _ = server.ask({"id": 6, "op": "cancel", "target": 12345})
    assert header == {"id": 6, "type": "result", "cancelled": False}


def test_large_request_is_read_whole(server):
    vertices = np.random.default_rng(0).standard_normal((1_500_000, 3)).astype(np.float32)  # 18 MB
    header, _ = server.ask({"id": 7, "op": "hello"}, {"vertices": vertices})
    assert header["type"] == "result" and header["id"] == 7


def test_the_queue_is_bounded_and_a_flood_is_refused_as_busy(server):
    from backend.serve.server import MAX_QUEUED_JOBS

    server.send({"id": "long", "op": "sample", "count": 1, "sampler": "ddpm"})
    header, _ = server.reply()
    assert header["id"] == "long" and header["type"] == "progress", header
    for i in range(MAX_QUEUED_JOBS + 1):
        server.send({"id": f"waiting-{i}", "op": "load_model", "model": "default"})
    server.send({"id": "stop", "op": "cancel"})
    final = {}
    while len(final) < MAX_QUEUED_JOBS + 3:
        header, _ = server.reply()
        if header["type"] != "progress":
            final[header["id"]] = header
    last = final[f"waiting-{MAX_QUEUED_JOBS}"]
    assert last["type"] == "error" and last["message"].startswith("busy"), last
    assert all(final[f"waiting-{i}"]["code"] == "cancelled" for i in range(MAX_QUEUED_JOBS))
    assert final["long"]["code"] == "cancelled" and final["stop"]["cancelled"] is True
    assert_alive(server)
