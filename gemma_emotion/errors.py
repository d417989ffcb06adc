"""The one base class of errors meant for the user.

An error whose message is the whole story for the user (a missing file, a bad model id, a malformed row,
a setting out of range) derives from `UserError`. The CLI prints its message as one line and exits 2, the
app's API endpoints and the model loader show it as is; any other exception is a bug and is reported with
its type (and traceback, where there is a log). Each module keeps its own subclass beside the code that
raises it; the subclasses that also derive from a built-in type (ValueError, KeyError, ...) do so for the
callers that caught that type before this class existed.
"""

from __future__ import annotations


class UserError(Exception):
    """An error whose message is the whole story for the user."""
