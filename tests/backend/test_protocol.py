"""The frame codec: round trips, large arrays, and every kind of bad frame."""
import io
import json
import struct

import numpy as np
import pytest

from backend import protocol


def roundtrip(header, arrays=None):
    stream = io.BytesIO(protocol.encode_frame(header, arrays))
    frame = protocol.read_frame(stream)
    assert protocol.read_frame(stream) is None, "a frame must be consumed exactly"
    return frame


def raw_frame(header_bytes, payload=b""):
    """A frame with honest lengths around any header bytes and payload."""
    return struct.pack("<IQ", len(header_bytes), len(payload)) + header_bytes + payload


def raw_json_frame(header, payload=b""):
    return raw_frame(json.dumps(header).encode(), payload)


@pytest.mark.parametrize("dtype", sorted(protocol.ALLOWED_DTYPES))
def test_every_dtype_round_trips(dtype):
    rng = np.random.default_rng(0)
    array = (rng.random((3, 5, 2)) * 100).astype(dtype)
    header, arrays = roundtrip({"id": 1, "op": "x"}, {"a": array})
    assert header == {"id": 1, "op": "x"}
    assert arrays["a"].dtype == np.dtype(dtype)
    np.testing.assert_array_equal(arrays["a"], array)


def test_shapes_empty_scalar_and_noncontiguous_arrays():
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    arrays = {"empty": np.zeros((0, 3), np.float32), "scalar": np.array(7, np.int64), "strided": base[:, ::2]}
    _, decoded = roundtrip({"id": "s"}, arrays)
    for name, value in arrays.items():
        assert decoded[name].shape == value.shape
        np.testing.assert_array_equal(decoded[name], value)
    assert decoded["strided"].flags.writeable


def test_big_endian_input_arrives_as_the_same_values():
    array = np.arange(10, dtype=">f8")
    _, decoded = roundtrip({"id": 1}, {"a": array})
    np.testing.assert_array_equal(decoded["a"], np.arange(10, dtype=np.float64))


def test_large_arrays_round_trip():
    rng = np.random.default_rng(1)
    vertices = rng.standard_normal((2_000_000, 3)).astype(np.float32)  # 24 MB
    faces = rng.integers(0, 2_000_000, size=(1_000_000, 3), dtype=np.int32)  # 12 MB
    _, decoded = roundtrip({"id": 2, "op": "variations"}, {"vertices": vertices, "faces": faces})
    np.testing.assert_array_equal(decoded["vertices"], vertices)
    np.testing.assert_array_equal(decoded["faces"], faces)


def test_frames_follow_each_other_on_one_stream():
    stream = io.BytesIO(b"".join(protocol.encode_frame({"id": i}, {"v": np.full(i, i, np.int32)}) for i in range(5)))
    for i in range(5):
        header, arrays = protocol.read_frame(stream)
        assert header["id"] == i and arrays["v"].tolist() == [i] * i
    assert protocol.read_frame(stream) is None


def test_encoder_refuses_object_arrays_and_nan_in_header():
    with pytest.raises(TypeError, match="dtype"):
        protocol.encode_frame({"id": 1}, {"a": np.array(["x"], dtype=object)})
    with pytest.raises(ValueError):
        protocol.encode_frame({"id": 1, "tau": float("nan")})


def test_truncated_frame_is_a_protocol_error():
    frame = protocol.encode_frame({"id": 1}, {"a": np.zeros(100, np.float32)})
    for cut in (2, 10, len(frame) - 1):
        with pytest.raises(protocol.ProtocolError, match="stream ended"):
            protocol.read_frame(io.BytesIO(frame[:cut]))


def test_oversized_frames_are_skipped_and_the_stream_stays_in_step():
    for header_length, payload_length in [(protocol.MAX_HEADER_BYTES + 1, 0), (2, protocol.MAX_ARRAY_BYTES + 1)]:
        skipped = struct.pack("<IQ", header_length, payload_length)
        stream = io.BytesIO(skipped + b"x" * (header_length + payload_length) + protocol.encode_frame({"id": 3}))
        with pytest.raises(protocol.FrameError, match="over the limits") as info:
            protocol.read_frame(stream)
        assert info.value.request_id is None
        assert protocol.read_frame(stream)[0] == {"id": 3}


def test_invalid_json_is_a_frame_error_and_the_stream_stays_in_step():
    stream = io.BytesIO(raw_frame(b"{not json", b"payload the header cannot describe") + protocol.encode_frame({"id": 9}))
    with pytest.raises(protocol.FrameError, match="JSON"):
        protocol.read_frame(stream)
    assert protocol.read_frame(stream)[0] == {"id": 9}


@pytest.mark.parametrize("text", [
    b'{"id": NaN}', b'{"id": 1, "tau": Infinity}', b'{"id": -Infinity}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"id": 1, "seed": ' + b"9" * 5000 + b"}",
    b'"a string"', b"\xff\xfe", b"",
])
def test_headers_json_cannot_hold_are_frame_errors(text):
    stream = io.BytesIO(raw_frame(text) + protocol.encode_frame({"id": 2}))
    with pytest.raises(protocol.FrameError):
        protocol.read_frame(stream)
    assert protocol.read_frame(stream)[0] == {"id": 2}


def test_wrong_array_byte_count_names_the_array_and_keeps_the_stream_in_step():
    descriptor = {"name": "vertices", "dtype": "float32", "shape": [4, 3], "nbytes": 40}
    bad = raw_json_frame({"id": 5, "arrays": [descriptor]}, b"\0" * 40)
    stream = io.BytesIO(bad + protocol.encode_frame({"id": 6}))
    with pytest.raises(protocol.FrameError, match="vertices") as info:
        protocol.read_frame(stream)
    assert info.value.request_id == 5
    assert protocol.read_frame(stream)[0] == {"id": 6}


def good(**change):
    return {"name": "a", "dtype": "float32", "shape": [1], "nbytes": 4, **change}


@pytest.mark.parametrize("descriptors, message", [
    ([good(dtype="object")], "dtype"),
    ([good(dtype=["float32"])], "dtype"),
    ([good(shape=[-1])], "shape"),
    ([good(shape="12")], "shape"),
    ([good(shape=[1] * 70, nbytes=4)], "shape"),
    ([good(shape=[2 ** 63, 2 ** 63])], "shape"),
    ([good(shape=[True])], "shape"),
    ([good(name="")], "name"),
    ([good(name=["a"])], "name"),
    ([good(nbytes=None)], "nbytes"),
    ([good(nbytes=4.0)], "nbytes"),
    ([good(nbytes=float("nan"))], "JSON|nbytes"),
    ([good(), good()], "twice"),
    ([good()] * (protocol.MAX_ARRAYS + 1), "at most"),
    (["not a descriptor"], "object"),
    ("not a list", "list"),
])
def test_invalid_descriptors_are_frame_errors_for_that_request(descriptors, message):
    payload = b"\0" * 4 * (len(descriptors) if isinstance(descriptors, list) else 1)
    try:
        frame = raw_json_frame({"id": 1, "arrays": descriptors}, payload)
    except ValueError:
        frame = raw_frame(json.dumps({"id": 1, "arrays": descriptors}, allow_nan=True).encode(), payload)
    stream = io.BytesIO(frame + protocol.encode_frame({"id": 8}))
    with pytest.raises(protocol.FrameError, match=message):
        protocol.read_frame(stream)
    assert protocol.read_frame(stream)[0] == {"id": 8}


def test_payload_longer_or_shorter_than_the_arrays_declare_is_refused():
    for extra in (b"", b"\0" * 8):
        frame = raw_json_frame({"id": 1, "arrays": [good()]}, b"\0" * 4 + extra) if extra else \
            raw_json_frame({"id": 1, "arrays": [good(), good(name="b")]}, b"\0" * 4)
        with pytest.raises(protocol.FrameError, match="follow|nbytes"):
            protocol.read_frame(io.BytesIO(frame))


@pytest.mark.parametrize("value, readable", [
    (7, True), ("job-1", True), (-3, True), (2 ** 53, False), (True, False), (1.5, False), (None, False),
    (["a"], False), ({"a": 1}, False), ("x" * 201, False),
])
def test_readable_ids(value, readable):
    assert (protocol.readable_id(value) is not None) == readable


def test_a_reader_that_skips_nothing_refuses_an_oversized_frame_at_once():
    stream = io.BytesIO(struct.pack("<IQ", protocol.MAX_HEADER_BYTES + 1, 0) + b"garbage")
    with pytest.raises(protocol.ProtocolError, match="over the limits"):
        protocol.read_frame(stream, skip_oversized=False)
    assert stream.tell() == 12, "nothing past the lengths was read"
