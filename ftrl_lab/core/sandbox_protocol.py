"""Wire formats between the sandbox parent, its zygote and the per-environment children.

Two formats, both length-prefixed (4-byte big-endian length, then the body):

* **Requests** (parent -> zygote, parent -> child) and the zygote's control messages are JSON
  frames (``encode_frame`` / ``FrameReader``). Only trusted code writes them; the reader still
  bounds their size and refuses JSON nested deeper than ``max_depth`` before decoding it.
* **Replies** (child -> parent) carry tool results and are written by a process that runs
  untrusted code, so they use a flat binary record that needs no recursive decoding at all
  (``encode_reply`` / ``ReplyReader``): a fixed header (call index, flags, seconds, three
  lengths) and three UTF-8 (surrogatepass) texts. Every length is checked against the
  reader's limits before anything is allocated; any inconsistency raises ``FrameError``.

Stdlib only: imported by the worker inside the sandbox as a plain module.
"""

import json
import struct

HEADER = struct.Struct("!I")
# call index, flags (ok, truncated, has_error), seconds, len(content), len(error), len(stdout)
REPLY = struct.Struct("!IBdIII")
OK, TRUNCATED, HAS_ERROR = 1, 2, 4
_dumps, _loads = json.dumps, json.loads


class FrameError(Exception):
    """A frame that is too large, too deep, truncated or otherwise malformed."""


def encode_frame(obj) -> bytes:
    """One JSON frame (ASCII, so lone surrogates survive the round trip)."""
    data = _dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    return HEADER.pack(len(data)) + data


def json_depth_ok(body: bytes, max_depth: int) -> bool:
    """True when the JSON text ``body`` nests arrays/objects at most ``max_depth`` deep.

    A linear scan that skips string contents, run before ``json.loads`` so that decoding can
    never recurse deeply. (It does not validate; ``json.loads`` does that afterwards.)"""
    depth = 0
    i, n = 0, len(body)
    find = body.find
    while i < n:
        c = body[i]
        if c == 0x22:  # a string: jump to its closing quote, skipping escapes
            j = i + 1
            while True:
                j = find(b'"', j)
                if j < 0:
                    return True  # unterminated: json.loads will refuse it
                k = j - 1
                while body[k] == 0x5C:  # count the backslashes before the quote
                    k -= 1
                if (j - 1 - k) % 2 == 0:
                    break
                j += 1
            i = j + 1
            continue
        if c == 0x5B or c == 0x7B:
            depth += 1
            if depth > max_depth:
                return False
        elif c == 0x5D or c == 0x7D:
            depth -= 1
        i += 1
    return True


def next_frame(buf: bytearray, limit: int, what: str) -> bytes | None:
    """Take the next complete length-prefixed frame off the front of ``buf`` (None: not all there
    yet); a declared length over ``limit`` raises :class:`FrameError` before anything is read."""
    if len(buf) < HEADER.size:
        return None
    (n,) = HEADER.unpack_from(buf)
    if n > limit:
        raise FrameError(f"{what} of {n} bytes exceeds the limit of {limit}")
    if len(buf) < HEADER.size + n:
        return None
    body = bytes(buf[HEADER.size : HEADER.size + n])
    del buf[: HEADER.size + n]
    return body


class FrameReader:
    """Accumulates bytes and yields decoded JSON frames; refuses frames over ``max_bytes`` or
    nested deeper than ``max_depth`` (None: no depth check, for frames from a trusted sender)."""

    def __init__(self, max_bytes: int, max_depth: int | None = 16):
        self.max_bytes, self.max_depth = max_bytes, max_depth
        self.buf = bytearray()

    def feed(self, data) -> list:
        self.buf += data
        out = []
        while (body := next_frame(self.buf, self.max_bytes, "frame")) is not None:
            if self.max_depth is not None and not json_depth_ok(body, self.max_depth):
                raise FrameError(f"frame nested deeper than {self.max_depth}")
            try:
                out.append(_loads(body.decode("ascii")))
            except (ValueError, RecursionError) as e:
                raise FrameError(f"malformed frame: {e}") from None
        return out


def encode_reply(index: int, ok: bool, truncated: bool, seconds: float, content: str, error, stdout: str) -> bytes:
    """One reply record (no length prefix of its own: records are concatenated in a frame)."""
    c = content.encode("utf-8", "surrogatepass")
    e = b"" if error is None else error.encode("utf-8", "surrogatepass")
    o = stdout.encode("utf-8", "surrogatepass")
    flags = (OK if ok else 0) | (TRUNCATED if truncated else 0) | (HAS_ERROR if error is not None else 0)
    return REPLY.pack(index, flags, seconds, len(c), len(e), len(o)) + c + e + o


def encode_replies(records: list) -> bytes:
    """A frame of concatenated reply records."""
    body = b"".join(records)
    return HEADER.pack(len(body)) + body


class ReplyReader:
    """Decodes reply frames from an untrusted child into tuples
    ``(index, ok, truncated, seconds, content, error, stdout)``.

    ``max_frame`` bounds a frame; ``max_text`` bounds each text field in bytes. Raises
    ``FrameError`` on anything malformed; never anything else."""

    def __init__(self, max_frame: int, max_text: int):
        self.max_frame, self.max_text = max_frame, max_text
        self.buf = bytearray()

    def feed(self, data) -> list:
        self.buf += data
        out = []
        while (body := next_frame(self.buf, self.max_frame, "reply frame")) is not None:
            body = memoryview(body)
            out.extend(self._records(body))
        return out

    def _records(self, body: memoryview) -> list:
        out, pos, n = [], 0, len(body)
        if n == 0:
            raise FrameError("empty reply frame")
        size = REPLY.size
        while pos < n:
            if n - pos < size:
                raise FrameError("truncated reply record")
            index, flags, seconds, lc, le, lo = REPLY.unpack_from(body, pos)
            pos += size
            if flags & ~(OK | TRUNCATED | HAS_ERROR) or max(lc, le, lo) > self.max_text or lc + le + lo > n - pos:
                raise FrameError("reply record with bad flags or lengths")
            if not (0.0 <= seconds < 1e7):  # also false for NaN
                raise FrameError("reply record with a bad duration")
            try:
                c = str(body[pos : pos + lc], "utf-8", "surrogatepass")
                e = str(body[pos + lc : pos + lc + le], "utf-8", "surrogatepass")
                o = str(body[pos + lc + le : pos + lc + le + lo], "utf-8", "surrogatepass")
            except UnicodeDecodeError:
                raise FrameError("reply text is not UTF-8") from None
            pos += lc + le + lo
            out.append(
                (index, bool(flags & OK), bool(flags & TRUNCATED), seconds, c, e if flags & HAS_ERROR else None, o)
            )
        return out
