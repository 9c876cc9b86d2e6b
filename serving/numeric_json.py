"""JSON arrays of numbers parsed straight into typed numpy arrays, without a Python object per number.

A float image batch is tens of thousands of numbers; parsing them into Python floats and nested lists
and then converting those to numpy costs several times the inference. Here the text of one array
(``[[0.5, 1e-3], [2, -4]]``) is checked and measured with vectorised numpy operations on its bytes,
and its numbers, stripped of brackets, are read as flat chunks by orjson into a float64 array
(correctly rounded, then cast to the signature's dtype, as TF Serving reads JSON numbers as doubles).
Anything this does not handle (NaN/Infinity tokens, strings, objects,
empty or ragged lists, malformed numbers) returns None, and the caller falls back to a full JSON parse,
which also produces the precise error message.
"""
from __future__ import annotations

import re

import numpy as np
import orjson

MAX_RANK = 32
CHUNK = 65536  # numbers parsed per orjson call
_OPEN, _CLOSE, _COMMA, _NUMBER = ord("["), ord("]"), ord(","), ord("n")
_NUMBER_CHARS = np.zeros(256, bool)
_NUMBER_CHARS[list(b"0123456789+-.eE")] = True
_NUMBER_STARTS = np.zeros(256, bool)
_NUMBER_STARTS[list(b"0123456789-")] = True
_SPACES = np.zeros(256, bool)
_SPACES[list(b" \t\r\n")] = True
_ALLOWED = _NUMBER_CHARS | _SPACES
_ALLOWED[[_OPEN, _CLOSE, _COMMA]] = True
_TENSOR_KEY = re.compile(rb'"(instances|inputs)"[ \t\r\n]*:[ \t\r\n]*\[')


def find_tensor_array(body: bytes) -> tuple[str, int, int] | None:
    """(key, start, end) of the one top-level-looking ``"instances"``/``"inputs"`` array of numbers in ``body``.

    ``body[start:end]`` is the array's text. Only a candidate: the caller confirms it by parsing the body
    with the array cut out and checking that the key now holds the placeholder.
    """
    matches = list(_TENSOR_KEY.finditer(body))
    if len(matches) != 1:
        return None
    start = matches[0].end() - 1
    rest = np.frombuffer(body, np.uint8, offset=start)
    allowed = _ALLOWED[rest]
    limit = len(rest) if allowed.all() else int(np.argmin(allowed))
    brackets = np.flatnonzero((rest[:limit] == _OPEN) | (rest[:limit] == _CLOSE))
    depth = np.cumsum(np.where(rest[brackets] == _OPEN, 1, -1).astype(np.int32))
    closed = np.flatnonzero(depth == 0)
    if not len(closed):
        return None
    return matches[0][1].decode(), start, start + int(brackets[closed[0]]) + 1


def _skeleton(text: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The array's structure with each number as ``n`` and blanks dropped, and the text's number mask."""
    if not _ALLOWED[text].all():
        return None
    numeric = _NUMBER_CHARS[text]
    starts = numeric.copy()
    starts[1:] &= ~numeric[:-1]
    if not _NUMBER_STARTS[text[starts]].all():  # JSON numbers start with a digit or '-'
        return None
    keep = (~numeric | starts) & ~_SPACES[text]
    return np.where(starts, _NUMBER, text)[keep], numeric


def _shape(skeleton: np.ndarray) -> tuple[int, ...] | None:
    """The shape of a regular nested array whose skeleton this is, or None when it is not regular."""
    opens = skeleton == _OPEN
    depth = np.cumsum(opens.astype(np.int32) - (skeleton == _CLOSE))
    rank = int(np.argmin(opens)) if not opens.all() else len(opens)
    if not 1 <= rank <= MAX_RANK:
        return None
    lists = np.bincount(depth[opens], minlength=rank + 1)[1:rank + 1]
    numbers = int(np.count_nonzero(skeleton == _NUMBER))
    counts = [*lists[1:].tolist(), numbers]
    if lists[0] != 1 or any(count == 0 or count % parent for count, parent in zip(counts, lists.tolist())):
        return None
    shape = tuple(count // parent for count, parent in zip(counts, lists.tolist()))
    expected = b"n"
    for size in reversed(shape):
        expected = b"[" + b",".join([expected] * size) + b"]"
    return shape if expected == skeleton.tobytes() else None


def parse_number_array(text: bytes, dtype: np.dtype) -> np.ndarray | None:
    """``text`` (a JSON array of numbers, any nesting) as an array of ``dtype``, or None to fall back."""
    raw = np.frombuffer(text, np.uint8)
    found = _skeleton(raw)
    if found is None:
        return None
    skeleton, numeric = found
    shape = _shape(skeleton)
    if shape is None:
        return None
    numbers = raw[numeric | (raw == _COMMA)]  # "1.5,-2,3e4,...": the numbers without brackets or blanks
    values = _read_numbers(numbers, int(np.prod(shape)))
    if values is None or not np.isfinite(values).all():
        return None
    return values.astype(dtype).reshape(shape)


def _read_numbers(numbers: np.ndarray, count: int) -> np.ndarray | None:
    """``count`` comma-separated numbers as float64, read by orjson ``CHUNK`` at a time; None if one is malformed.

    orjson's number parser (strict JSON grammar, correctly rounded) is several times faster than numpy's
    text reader; the Python floats it makes live only for one chunk before numpy copies them out, so
    the memory they take is bounded however big the body, and other threads get the GIL between chunks.
    """
    text = numbers.tobytes()
    ends = [*(np.flatnonzero(numbers == _COMMA)[CHUNK - 1::CHUNK]).tolist(), len(text)]
    values = np.empty(count, np.float64)
    start = filled = 0
    for end in ends:
        try:
            chunk = orjson.loads(b"[" + text[start:end] + b"]")
        except orjson.JSONDecodeError:
            return None
        if filled + len(chunk) > count:
            return None
        values[filled:filled + len(chunk)] = chunk
        filled, start = filled + len(chunk), end + 1
    return values if filled == count else None
