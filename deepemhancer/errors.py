"""Exceptions of the engine.

``InputError`` is what a user can fix (bad file, bad flag, missing model): the command prints its message and exits
with code 2. Anything else is an internal error (exit code 1).
"""


class InputError(ValueError):
    """A problem with the user's input that the message explains how to fix."""


class ModelNotFoundError(InputError):
    """No model of the requested kind is installed where we looked."""
