"""Errors that a user can act on.

The CLI prints these as one line and exits non-zero; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input or an unavailable resource, explained in one line a user can act on."""
