"""JSON arrays of numbers parsed straight into typed numpy arrays, without a Python object per number.

A float image batch is tens of thousands of numbers; parsing them into Python floats and nested lists
and then converting those to numpy costs several times the inference. Here the text of one array
(``[[0.5, 1e-3], [2, -4]]``) is checked and measured with C-speed passes over its bytes (``bytes.translate``
into byte classes, a few vectorised numpy comparisons, and one comparison with the bracket-and-comma text
that the array's shape implies), and its numbers, stripped of brackets, are read as flat chunks by orjson
into a float64 array (correctly rounded, then cast to the signature's dtype, as TF Serving reads JSON
numbers as doubles). Anything this does not handle (NaN/Infinity tokens, strings, objects, empty or
ragged lists, malformed numbers) returns None, and the caller falls back to a full JSON parse, which
also produces the precise error message.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import numpy as np
import orjson

MAX_RANK = 32
CHUNK = 65536  # numbers parsed per orjson call
_COMMA = ord(",")
_NUMBER_BYTES = b"0123456789+-.eE"
_SPACE_BYTES = b" \t\r\n"
_NUMBER, _OPEN, _CLOSE, _SEPARATOR, _SPACE, _OTHER = range(6)  # byte classes


def _class_table() -> bytes:
    """The ``bytes.translate`` table that maps every byte to its class."""
    table = bytearray([_OTHER]) * 256
    for byte in _NUMBER_BYTES:
        table[byte] = _NUMBER
    for byte in _SPACE_BYTES:
        table[byte] = _SPACE
    table[ord("[")], table[ord("]")], table[_COMMA] = _OPEN, _CLOSE, _SEPARATOR
    return bytes(table)


_CLASS_TABLE = _class_table()
_TENSOR_KEY = re.compile(rb'"(instances|inputs)"[ \t\r\n]*:[ \t\r\n]*\[')


def _classes(text: bytes) -> np.ndarray:
    return np.frombuffer(text.translate(_CLASS_TABLE), np.uint8)


@dataclass(frozen=True)
class Candidate:
    """Where a request's tensor may be: ``body[start:end]`` under ``key``, and the byte classes of that text."""

    key: str
    start: int
    end: int
    classes: np.ndarray


def find_tensor_array(body: bytes) -> Candidate | None:
    """The one top-level-looking ``"instances"``/``"inputs"`` array of numbers in ``body``, or None.

    ``body[start:end]`` runs from the array's ``[`` to the last ``]`` before the first byte that cannot
    be part of an array of numbers (in valid JSON, the ``"`` of the next key or the closing ``}``). Only a
    candidate: ``parse_number_array`` declines it unless it is one regular array, and the caller confirms
    it by parsing the body with the array cut out and checking that the key now holds the placeholder.
    Its byte classes, found on the way, are kept for ``parse_number_array``.
    """
    match = _TENSOR_KEY.search(body)
    if match is None:
        return None
    start = match.end() - 1
    classes = _classes(body[start:])
    other = classes == _OTHER
    limit = start + (int(np.argmax(other)) if other.any() else len(other))
    end = body.rfind(b"]", start, limit) + 1
    # A second key can only follow the array (its text has no quotes), so the array is not searched again.
    if end <= start or _TENSOR_KEY.search(body, end):
        return None
    return Candidate(match[1].decode(), start, end, classes[:end - start])


def _token_count(numeric: np.ndarray) -> int:
    """How many runs of number bytes ``numeric`` marks."""
    return int(numeric[0]) + int(np.count_nonzero(numeric[1:] & ~numeric[:-1]))


def _compact(text: bytes, classes: np.ndarray) -> bytes | None:
    """``text`` (of byte ``classes``) without blanks, if it holds only brackets, commas and numbers, no two
    numbers separated by blanks alone and none beside a bracket that opens or closes a list of lists; else None."""
    if not len(classes) or (classes == _OTHER).any():
        return None
    spaces = classes == _SPACE
    if spaces.any():
        tokens = _token_count(classes == _NUMBER)
        text, classes = text.translate(None, _SPACE_BYTES), classes[~spaces]
        if not len(classes) or _token_count(classes == _NUMBER) != tokens:  # blanks between two numbers
            return None
    numeric = classes == _NUMBER
    if ((classes[:-1] == _CLOSE) & numeric[1:]).any() or (numeric[:-1] & (classes[1:] == _OPEN)).any():
        return None  # a number beside a list: ]1 or 1[
    return text


def _shape(structure: bytes) -> tuple[int, ...] | None:
    """The shape of a regular nested array whose text with the numbers removed is ``structure``, or None.

    The sizes are read off the first list at each depth (a list of n elements of length u is
    ``2 + n*u + (n-1)`` bytes long, a number's length being 0 here), then the whole text the shape
    implies is compared with ``structure``.
    """
    rank = len(structure) - len(structure.lstrip(b"["))
    if not 1 <= rank <= MAX_RANK:
        return None
    sizes, unit = [], 0
    for depth in range(rank, 0, -1):  # innermost first; the first list at a depth starts at byte depth-1
        # Its last "]" ends that run; the outermost list is the whole text (searching for its run of
        # brackets would scan all of it; the comparison below checks that it is there).
        close = structure.find(b"]" * (rank - depth + 1)) if depth > 1 else len(structure) - rank
        if close < 0:
            return None
        length = close + (rank - depth) - (depth - 1) + 1
        size, rest = divmod(length - 1, unit + 1)
        if rest or size < 1:
            return None
        sizes.append(size)
        unit = length
    expected = b""
    for size in sizes:
        expected = b"[" + b",".join([expected] * size) + b"]"
    return tuple(reversed(sizes)) if expected == structure else None


def parse_number_array(text: bytes, dtype: np.dtype, classes: np.ndarray | None = None) -> np.ndarray | None:
    """``text`` (a JSON array of numbers, any nesting) as an array of ``dtype``, or None to fall back.

    ``classes``: the byte classes of ``text`` if the caller has them (``Candidate.classes``).
    """
    compact = _compact(text, _classes(text) if classes is None else classes)
    if compact is None:
        return None
    shape = _shape(compact.translate(None, _NUMBER_BYTES))
    if shape is None:
        return None
    values = _read_numbers(compact.translate(None, b"[]"), int(np.prod(shape)))  # "1.5,-2,3e4,...": one per slot
    if values is None or not np.isfinite(values).all():
        return None
    return values.astype(dtype).reshape(shape)


def _read_numbers(text: bytes, count: int) -> np.ndarray | None:
    """``count`` comma-separated numbers as float64, read by orjson ``CHUNK`` at a time; None if one is malformed.

    orjson's number parser (strict JSON grammar, correctly rounded) is several times faster than numpy's
    text reader, and ``struct`` packs the Python numbers it makes into doubles at twice the speed of
    numpy's conversion of a list (which first inspects every item for its type). The Python numbers live
    only for one chunk, so the memory they take is bounded however big the body, and other threads get
    the GIL between chunks.
    """
    ends = [len(text)]
    if count > CHUNK:
        ends[:0] = np.flatnonzero(np.frombuffer(text, np.uint8) == _COMMA)[CHUNK - 1::CHUNK].tolist()
    packed = []
    start = filled = 0
    for end in ends:
        try:
            chunk = orjson.loads(b"[" + text[start:end] + b"]")
        except orjson.JSONDecodeError:
            return None
        if filled + len(chunk) > count:
            return None
        packed.append(struct.pack(f"{len(chunk)}d", *chunk))
        filled, start = filled + len(chunk), end + 1
    return np.frombuffer(b"".join(packed), np.float64) if filled == count else None
