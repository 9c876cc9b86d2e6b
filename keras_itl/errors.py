"""Errors that a user can act on, and how foreign exceptions are told to the user in one line.

The CLI prints a UserError as one line and exits non-zero; anything else is a bug and keeps its
traceback.
"""
from __future__ import annotations

import socket
import urllib.error


class UserError(Exception):
    """Bad input or an unavailable resource, explained in one line a user can act on."""


def one_line(error: BaseException) -> str:
    """``Type: first line of the message`` — enough to name a foreign failure without its traceback."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def network_failure(error: BaseException) -> BaseException | None:
    """The exception in ``error``'s cause/context chain that says the network was unreachable, if any.

    Downloads fail through several layers (requests, urllib3, urllib, Keras' ``get_file``) that wrap
    or re-raise the socket error; only a failure that really is the network may be reported as
    "offline" — a missing module or a bad directory on the same path must be named as itself.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_network_error(current):
            return current
        current = current.__cause__ or current.__context__
    return None


def _is_network_error(error: BaseException) -> bool:
    if isinstance(error, (ConnectionError, TimeoutError, socket.gaierror, socket.herror)):
        return True
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        return isinstance(error.reason, OSError)
    # requests (used by TFDS) has its own ConnectionError/Timeout outside the builtin hierarchy.
    return any(cls.__module__.startswith("requests") and cls.__name__ in ("ConnectionError", "Timeout")
               for cls in type(error).__mro__)
