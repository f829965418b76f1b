"""The numeric constants in a Lambda layer's stored code, read as data: never run.

Keras stores a Lambda's function as ``marshal.dumps(code)`` in base64. Its constants
(``x / 127.5 - 1`` holds 127.5 and 1) tell the user what to declare instead of running it.
Unmarshalling builds a code object without running it, but it is done in a separate,
isolated Python process so that malformed bytes can crash only that process; code marshalled
by another Python version (Python <= 3.9 files cannot be read by 3.11) falls back to a
conservative scan of the bytes for tuples of plain constants.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
import subprocess
import sys

#: Run by ``python -I``: unmarshal stdin, print the numbers among the code's constants
#: (inside constant tuples and nested code objects too) as JSON. Nothing is executed.
_CHILD = """
import json, marshal, sys
def walk(values, out):
    for c in values:
        if isinstance(c, bool) or c is None:
            continue
        if isinstance(c, (int, float)):
            out.append(c)
        elif isinstance(c, (tuple, frozenset)):
            walk(c, out)
        elif hasattr(c, "co_consts"):
            walk(c.co_consts, out)
out = []
walk([marshal.loads(sys.stdin.buffer.read())], out)
print(json.dumps(out))
"""

_REF = 0x80  # marshal's FLAG_REF bit on a type code


def decode_function_field(function: object) -> bytes | None:
    """The marshalled bytes a Lambda config stores, or None (a named function, no code).

    Keras 2 / tf.keras: ``[base64, defaults, closure]`` (or the base64 string alone);
    Keras 3: ``{"class_name": "__lambda__", "config": {"code": base64, ...}}``.
    """
    if isinstance(function, dict):
        config = function.get("config")
        function = config.get("code") if isinstance(config, dict) else None
    elif isinstance(function, list | tuple) and function:
        function = function[0]
    if not isinstance(function, str):
        return None
    try:
        return base64.b64decode(function.encode("ascii"), validate=False)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None


def code_constants(raw: bytes) -> tuple[list[float], str]:
    """The numbers among the constants of marshalled code ``raw``, and how they were read:
    ``"unmarshalled"`` (exact, by this Python) or ``"scanned"`` (another Python's format)."""
    try:
        done = subprocess.run([sys.executable, "-I", "-S", "-c", _CHILD], input=raw,
                              capture_output=True, timeout=20, check=False)
        if done.returncode == 0:
            values = json.loads(done.stdout)
            if isinstance(values, list):
                return [v for v in values if isinstance(v, int | float)], "unmarshalled"
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    return scan_constants(raw), "scanned"


def scan_constants(raw: bytes) -> list[float]:
    """Numbers in tuples of plain constants found anywhere in ``raw`` (marshal format of any
    Python 2.7-3.x): a tuple counts only if every element parses as None, a bool, an int, a
    float, a string, a back-reference or such a tuple, so stray bytes of bytecode are not taken
    for numbers."""
    found: list[float] = []
    position = 0
    while position < len(raw):
        kind = raw[position] & ~_REF
        if kind in (0x28, 0x29):  # '(' tuple with a 4-byte count, ')' small tuple
            parsed = _parse_tuple(raw, position)
            if parsed is not None:
                numbers, end = parsed
                found.extend(numbers)
                position = end
                continue
        position += 1
    return found


def _parse_tuple(raw: bytes, position: int) -> tuple[list[float], int] | None:
    small = raw[position] & ~_REF == 0x29
    start = position + (2 if small else 5)
    if start > len(raw):
        return None
    count = raw[position + 1] if small else struct.unpack_from("<i", raw, position + 1)[0]
    if not 1 <= count <= 64:
        return None
    numbers: list[float] = []
    at = start
    for _ in range(count):
        element = _parse_plain(raw, at)
        if element is None:
            return None
        values, at = element
        numbers.extend(values)
    return numbers, at


def _parse_plain(raw: bytes, at: int) -> tuple[list[float], int] | None:
    """One plain marshal element at ``at``: (the numbers in it, the offset after it)."""
    if at >= len(raw):
        return None
    kind = raw[at] & ~_REF
    if kind in (0x28, 0x29):  # a nested tuple, e.g. the (10, 15) of resize(x, (10, 15))
        return _parse_tuple(raw, at)
    element = _parse_scalar(raw, at, kind)
    if element is None:
        return None
    value, end = element
    return ([] if value is None else [value]), end


def _parse_scalar(raw: bytes, at: int, kind: int) -> tuple[float | None, int] | None:
    """One non-container element: (its number or None, the offset after it)."""
    body = at + 1
    fixed = {0x4E: 0, 0x54: 0, 0x46: 0, 0x72: 4, 0x52: 4}  # None, True, False, refs (3.x, 2.x)
    if kind in fixed:
        return None, body + fixed[kind]
    if kind == 0x69 and body + 4 <= len(raw):  # 'i': int32
        return struct.unpack_from("<i", raw, body)[0], body + 4
    if kind == 0x67 and body + 8 <= len(raw):  # 'g': binary float
        value = struct.unpack_from("<d", raw, body)[0]
        return (value, body + 8) if math.isfinite(value) else None
    if kind in (0x7A, 0x5A) and body < len(raw):  # 'z'/'Z': short ASCII string
        return None, body + 1 + raw[body]
    if kind in (0x73, 0x74, 0x75, 0x61, 0x41) and body + 4 <= len(raw):  # sized strings
        size = struct.unpack_from("<i", raw, body)[0]
        if 0 <= size <= 4096 and body + 4 + size <= len(raw):
            return None, body + 4 + size
    return None

