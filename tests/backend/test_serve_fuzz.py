"""Fuzzing the real server process: thousands of seeded random and mutated frames. Whatever
arrives, the process must live, answer every frame exactly once (an `error` or `result` for a
frame whose id it can read, a `protocol_error` event otherwise) and stay in step, so that a
final `hello` is answered.

Each frame's lengths are honest (they are what keeps any stream in step); everything inside
them is fair game: the header's bytes, its JSON types, the array declarations, the payload.
After each fuzzed frame comes a probe that the worker thread answers (an unknown model), so
that every reply to the fuzzed frame, queued job or not, has arrived before the probe's.
"""
import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from backend import protocol
from test_serve import ServerProcess

FUZZ_SEED = 20261202
FUZZ_CASES = 2500

OPS = ["hello", "load_model", "sample", "variations", "interpolate", "voxel_guided", "regenerate_region",
       "reconstruct", "cancel", "no_such_op"]
FIELDS = ["count", "tau", "similarity", "steps", "seed", "sampler", "eta", "output", "center", "size", "category", "guidance",
          "frames", "resolution", "smoothing", "normals", "model", "target", "voxel_size", "invert_points"]
ARRAY_NAMES = ["vertices", "faces", "matrix", "points", "keep", "voxel_centers", "vertices_a", "vertices_b", "x"]

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2 ** 70, max_value=2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["ddim", "ddpm", "mesh", "points", "chair", "any", "default", "network", "auto"]),
)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@st.composite
def arrays_and_descriptors(draw):
    """(descriptors, payload): mostly well formed, often with one part wrong."""
    descriptors, payload = [], b""
    for _ in range(draw(st.integers(0, 3))):
        dtype = draw(st.sampled_from(sorted(protocol.ALLOWED_DTYPES)))
        shape = draw(st.lists(st.integers(0, 5), min_size=0, max_size=3))
        data = np.zeros(shape, dtype).tobytes()
        descriptor = {"name": draw(st.sampled_from(ARRAY_NAMES)), "dtype": dtype, "shape": shape, "nbytes": len(data)}
        if draw(st.integers(0, 3)) == 0:  # one field of it replaced by anything
            descriptor[draw(st.sampled_from(["name", "dtype", "shape", "nbytes"]))] = draw(json_values)
        descriptors.append(descriptor)
        payload += data
    if draw(st.integers(0, 5)) == 0:
        payload += draw(st.binary(max_size=16))
    return descriptors, payload


@st.composite
def structured_frames(draw):
    header = {}
    if draw(st.integers(0, 5)):
        header["id"] = draw(st.one_of(st.integers(-10, 10 ** 6), st.text(max_size=10), json_values))
    if draw(st.integers(0, 7)):
        header["op"] = draw(st.one_of(st.sampled_from(OPS), json_values))
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=4)):
        header[name] = draw(json_values)
    descriptors, payload = draw(arrays_and_descriptors())
    if descriptors or draw(st.booleans()):
        header["arrays"] = descriptors if draw(st.integers(0, 7)) else draw(json_values)
    body = json.dumps(header, allow_nan=True).encode()
    return body, payload


@st.composite
def mutated_frames(draw):
    """A structured frame's header bytes with a few bytes changed, cut or inserted."""
    body, payload = draw(structured_frames())
    body = bytearray(body)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, max(len(body) - 1, 0)))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and body:
            body[position] = draw(st.integers(0, 255))
        elif action == "cut":
            del body[position:position + draw(st.integers(1, 8))]
        else:
            body[position:position] = draw(st.sampled_from([b"NaN", b"[", b"{", b'"', b"\xff", b"1e999", b"-", b","]))
    return bytes(body), payload


deep_or_huge = st.sampled_from([
    b"[" * 100_000 + b"]" * 100_000,
    b'{"id": 1, "op": "sample", "seed": ' + b"7" * 5000 + b"}",
    b'{"id": 1, "op": "sample", "center": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"id": NaN, "op": "hello"}',
    b'{"id": 1, "op": "hello", "arrays": [{"name": "a", "dtype": "float32", "shape": "abc", "nbytes": 1}]}',
])

frames = st.one_of(structured_frames(), mutated_frames(), st.tuples(st.binary(max_size=64), st.binary(max_size=32)),
                   st.tuples(deep_or_huge, st.just(b"")))


def honest(body, payload):
    return struct.pack("<IQ", len(body), len(payload)) + body + payload


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    process = ServerProcess(tmp_path_factory.mktemp("fuzz"))
    yield process
    process.close()


def test_every_fuzzed_frame_gets_exactly_one_answer_and_the_server_stays_in_step(fuzz_server):
    counter = {"frames": 0}

    @seed(FUZZ_SEED)
    @settings(max_examples=FUZZ_CASES, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(frame=frames)
    def one_frame(frame):
        body, payload = frame
        if b'"shutdown"' in body:  # the one request that rightly ends the process
            body = body.replace(b'"shutdown"', b'"shutdowN"')
        counter["frames"] += 1
        probe = f"probe-{counter['frames']}"
        fuzz_server.send_raw(honest(body, payload))
        fuzz_server.send({"id": probe, "op": "load_model", "model": "no model has this name"})
        answers = []
        while True:
            frame_back = fuzz_server.reply()
            assert frame_back is not None, f"the server closed its output after {body[:200]!r}"
            header, _ = frame_back
            if header.get("id") == probe:
                assert header["type"] == "error" and header["code"] == "bad_request", header
                break
            if header["type"] != "progress":
                answers.append(header)
        assert len(answers) == 1, (body[:300], answers)
        assert answers[0]["type"] in ("result", "error", "protocol_error"), answers
        if answers[0]["type"] == "error":
            assert answers[0]["code"] != "internal", (body[:300], answers[0])

    one_frame()
    assert counter["frames"] >= FUZZ_CASES
    assert fuzz_server.process.poll() is None, "the server died"
    header, _ = fuzz_server.ask({"id": "final", "op": "hello"})
    assert header["type"] == "result" and header["id"] == "final"
