"""The frame codec shared by the Blender add-on and the backend process (stdlib + numpy only).

A frame is:
    4 bytes   little-endian uint32 H, the length of the header
    8 bytes   little-endian uint64 P, the length of the payload
    H bytes   UTF-8 JSON object, the header
    P bytes   the raw bytes of each array the header lists under "arrays", in order

Each array descriptor is {"name", "dtype", "shape", "nbytes"}: C order, little-endian, and the
descriptors' "nbytes" add up to P. Both lengths come before anything that can be malformed, so
a reader always consumes a whole frame and stays in step with the stream, whatever the header
and payload hold: a frame it cannot use is refused on its own (FrameError), never the stream.

Requests carry "id" and "op". Replies carry the request's "id" and a "type": zero or more
"progress" events ("step", "total", "stage"), then exactly one "result" or "error"
("message" for the artist, "traceback" for the log).
"""
import json
import math
import struct

import numpy as np

PROTOCOL_VERSION = 2

# Limits that protect both sides from a corrupt or hostile stream. A header is small JSON;
# the arrays of one frame may be large (a 5-million-face mesh is about 120 MB). A frame over
# a limit is skipped unread, in chunks, so it costs no memory.
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_ARRAY_BYTES = 512 * 1024 * 1024
MAX_ARRAYS = 64
MAX_DIMENSIONS = 8
MAX_NAME_CHARS = 200
# A request id that travels back in replies: a short string or an integer JSON keeps exact.
MAX_ID_CHARS = 200
MAX_ID_INTEGER = 2 ** 53
_SKIP_CHUNK = 1024 * 1024

# Only plain numeric dtypes travel: no object arrays, nothing that pickles.
ALLOWED_DTYPES = frozenset(
    ["bool", "uint8", "int8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
     "float16", "float32", "float64"]
)

_PREFIX = struct.Struct("<IQ")


class ProtocolError(Exception):
    """The stream cannot be read any further (it ended in the middle of a frame): close it."""


class FrameError(Exception):
    """One frame was read completely but its content is invalid; the stream is still in step.

    `request_id` is the id from the header when one could be read, so the reply can name it.
    """

    def __init__(self, message, request_id=None):
        super().__init__(message)
        self.request_id = request_id


def encode_frame(header, arrays=None):
    """Return the bytes of one frame: `header` (a JSON-able dict) plus named numpy arrays.

    The header's "arrays" key is written by this function; do not set it yourself.
    """
    if not isinstance(header, dict):
        raise TypeError("header must be a dict")
    arrays = arrays or {}
    descriptors, payloads = [], []
    for name, value in arrays.items():
        array = np.asarray(value, order="C")  # (ascontiguousarray would turn a scalar into 1-d)
        if array.dtype.name not in ALLOWED_DTYPES:
            raise TypeError(f"array {name!r} has dtype {array.dtype}, which the protocol does not carry")
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        descriptors.append({"name": name, "dtype": array.dtype.name, "shape": list(array.shape), "nbytes": len(data)})
        payloads.append(data)
    body = json.dumps({**header, "arrays": descriptors}, allow_nan=False, separators=(",", ":")).encode("utf-8")
    if len(body) > MAX_HEADER_BYTES:
        raise ValueError(f"frame header of {len(body)} bytes exceeds the {MAX_HEADER_BYTES}-byte limit")
    payload_length = sum(len(data) for data in payloads)
    if payload_length > MAX_ARRAY_BYTES:
        raise ValueError(f"frame arrays of {payload_length} bytes exceed the {MAX_ARRAY_BYTES}-byte limit")
    return b"".join([_PREFIX.pack(len(body), payload_length), body, *payloads])


def write_frame(stream, header, arrays=None):
    """Write one frame to a binary stream and flush it."""
    stream.write(encode_frame(header, arrays))
    stream.flush()


def read_frame(stream, skip_oversized=True):
    """Read one frame from a binary stream; return (header, arrays) or None at a clean end.

    Raises ProtocolError when the stream ends mid-frame (nothing more can be read), and
    FrameError when a complete frame is unusable: oversized (skipped unread), a header that is
    not a JSON object, arrays declared wrongly. The stream is then still in step: the next
    frame can be read. FrameError.request_id is the header's id when one could be read.
    Without `skip_oversized` (a reader that trusts no oversized frame: the add-on reading its
    own backend), an oversized frame is a ProtocolError at once, nothing of it read.
    """
    prefix = _read_exactly(stream, _PREFIX.size, allow_eof=True)
    if prefix is None:
        return None
    header_length, payload_length = _PREFIX.unpack(prefix)
    if header_length > MAX_HEADER_BYTES or payload_length > MAX_ARRAY_BYTES:
        sizes = (f"frame of {header_length} header bytes and {payload_length} array bytes is over the "
                 f"limits ({MAX_HEADER_BYTES} and {MAX_ARRAY_BYTES})")
        if not skip_oversized:
            raise ProtocolError(sizes)
        _skip(stream, header_length + payload_length)
        raise FrameError(f"{sizes}; it was skipped")
    body = _read_exactly(stream, header_length)
    payload = _read_exactly(stream, payload_length)
    header = _parse_header(body)
    request_id = readable_id(header.get("id"))
    descriptors = _array_descriptors(header.get("arrays", []), payload_length, request_id)
    arrays, offset = {}, 0
    for descriptor in descriptors:
        end = offset + descriptor["nbytes"]
        arrays[descriptor["name"]] = _decode_array(descriptor, payload[offset:end])
        offset = end
    header.pop("arrays", None)
    return header, arrays


def readable_id(value):
    """`value` if it can name a request in a reply (a string of at most MAX_ID_CHARS, or an
    integer of magnitude below MAX_ID_INTEGER, not a boolean), else None."""
    if isinstance(value, str) and len(value) <= MAX_ID_CHARS:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < MAX_ID_INTEGER:
        return value
    return None


def _refuse_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def _parse_header(body):
    try:
        header = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: bad JSON, NaN, huge integers
        raise FrameError(f"frame header is not valid UTF-8 JSON: {str(exc)[:200]}") from None
    if not isinstance(header, dict):
        raise FrameError("frame header must be a JSON object")
    return header


def _array_descriptors(descriptors, payload_length, request_id):
    """The header's array descriptors, each checked, their byte counts adding up to the payload."""
    def refuse(message):
        raise FrameError(message, request_id)

    if not isinstance(descriptors, list):
        refuse("frame header 'arrays' must be a list")
    if len(descriptors) > MAX_ARRAYS:
        refuse(f"frame declares {len(descriptors)} arrays; at most {MAX_ARRAYS} travel in one frame")
    names = set()
    for d in descriptors:
        if not isinstance(d, dict):
            refuse(f"array descriptor {_short(d)} must be an object")
        name, dtype, shape, nbytes = d.get("name"), d.get("dtype"), d.get("shape"), d.get("nbytes")
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
            refuse(f"array descriptor {_short(d)} needs a 'name': a string of 1 to {MAX_NAME_CHARS} characters")
        if name in names:
            refuse(f"array {name!r} appears twice in one frame")
        names.add(name)
        if not isinstance(dtype, str) or dtype not in ALLOWED_DTYPES:
            refuse(f"array {name!r} has unsupported dtype {_short(dtype)}")
        if (not isinstance(shape, list) or len(shape) > MAX_DIMENSIONS
                or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_ARRAY_BYTES for n in shape)):
            refuse(f"array {name!r} has an invalid shape {_short(shape)} "
                   f"(a list of at most {MAX_DIMENSIONS} non-negative integers)")
        expected = math.prod(shape) * np.dtype(dtype).itemsize
        if not isinstance(nbytes, int) or isinstance(nbytes, bool) or nbytes != expected:
            refuse(f"array {name!r} declares dtype {dtype} and shape {shape} ({expected} bytes) "
                   f"but 'nbytes' {_short(nbytes)}")
    declared = sum(d["nbytes"] for d in descriptors)
    if declared != payload_length:
        refuse(f"the frame's arrays declare {declared} bytes but {payload_length} bytes follow")
    return descriptors


def _decode_array(descriptor, payload):
    dtype = np.dtype(descriptor["dtype"]).newbyteorder("<")
    return np.frombuffer(payload, dtype=dtype).reshape(descriptor["shape"]).copy()


def _short(value, limit=80):
    """repr of a value from a frame, cut short: a message must not echo megabytes."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _read_exactly(stream, count, allow_eof=False):
    chunks, remaining = [], count
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            if allow_eof and remaining == count:
                return None
            raise ProtocolError(f"stream ended {count - remaining} bytes into a {count}-byte read")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _skip(stream, count):
    """Read and drop `count` bytes, a chunk at a time."""
    remaining = count
    while remaining:
        chunk = stream.read(min(remaining, _SKIP_CHUNK))
        if not chunk:
            raise ProtocolError(f"stream ended {count - remaining} bytes into a {count}-byte frame being skipped")
        remaining -= len(chunk)
