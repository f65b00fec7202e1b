"""The worker wire protocol: length-prefixed JSON frames followed by raw bytes (no torch here).

One frame::

    uint32 big-endian  JSON length J
    uint32 big-endian  payload length P
    J bytes            UTF-8 JSON object; ``"blob_sizes": [n1, n2, ...]`` splits the payload
    P bytes            the blobs (image files, an ONNX sample image), concatenated

Requests carry ``"id"`` (int, unique per connection) and ``"op"``; every response repeats the id
with ``"ok": true`` and the op's fields, or ``"ok": false, "error": {"code", "message"}``.
Error codes are in `ERROR_CODES`. The same framing serves stdin/stdout pipes and sockets.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any, BinaryIO

HEADER = struct.Struct(">II")
MAX_JSON_BYTES = 64 * 1024**2
MAX_PAYLOAD_BYTES = 2 * 1024**3

ERROR_CODES = (
    "invalid_image",  # not an image, corrupt, over the pixel limit
    "checkpoint",  # the checkpoint cannot be loaded (not ours, wrong framework, corrupt)
    "bad_request",  # unknown op, missing fields
    "export",  # export or its parity check failed
    "internal",  # anything else
)


class ProtocolError(Exception):
    """A malformed frame or a stream that ended in the middle of one."""


class WorkerError(Exception):
    """An error a worker reports for one request (`code` is one of `ERROR_CODES`)."""

    def __init__(self, code: str, message: str, *, reply: dict[str, Any] | None = None) -> None:
        self.code = code
        self.message = message
        self.reply = reply or {}
        super().__init__(f"{code}: {message}")


def encode_frame(msg: dict[str, Any], blobs: Sequence[bytes] = ()) -> list[bytes]:
    """The parts of one frame (write them in order; avoids copying large blobs)."""
    body = dict(msg)
    body["blob_sizes"] = [len(b) for b in blobs]
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    total = sum(len(b) for b in blobs)
    if len(data) > MAX_JSON_BYTES or total > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"frame too large ({len(data)} B JSON, {total} B payload)")
    return [HEADER.pack(len(data), total), data, *blobs]


def write_frame(fh: BinaryIO, msg: dict[str, Any], blobs: Sequence[bytes] = ()) -> None:
    """Write one frame and flush. Callers serialise writers (one lock per stream)."""
    for part in encode_frame(msg, blobs):
        fh.write(part)
    fh.flush()


def _read_exact(fh: BinaryIO, n: int) -> bytes | None:
    chunks: list[bytes] = []
    got = 0
    while got < n:
        chunk = fh.read(n - got)
        if not chunk:
            if got == 0:
                return None
            raise ProtocolError(f"stream ended after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fh: BinaryIO) -> tuple[dict[str, Any], list[bytes]] | None:
    """The next frame as (message, blobs), or None at a clean end of stream."""
    head = _read_exact(fh, HEADER.size)
    if head is None:
        return None
    jlen, plen = HEADER.unpack(head)
    if jlen > MAX_JSON_BYTES or plen > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"frame too large ({jlen} B JSON, {plen} B payload)")
    data = _read_exact(fh, jlen) if jlen else b""
    if data is None:
        raise ProtocolError("stream ended before the JSON of a frame")
    payload = _read_exact(fh, plen) if plen else b""
    if payload is None:
        raise ProtocolError("stream ended before the payload of a frame")
    try:
        msg = json.loads(data)
    except ValueError as exc:
        raise ProtocolError(f"frame JSON is invalid: {exc}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("frame JSON is not an object")
    sizes = msg.pop("blob_sizes", []) or []
    if not isinstance(sizes, list) or sum(int(s) for s in sizes) != len(payload):
        raise ProtocolError("blob_sizes do not add up to the payload length")
    blobs: list[bytes] = []
    offset = 0
    for s in sizes:
        blobs.append(payload[offset : offset + int(s)])
        offset += int(s)
    return msg, blobs


__all__ = [
    "ERROR_CODES",
    "HEADER",
    "ProtocolError",
    "WorkerError",
    "encode_frame",
    "read_frame",
    "write_frame",
]
