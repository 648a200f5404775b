"""Errors meant for people: one line that says what is wrong, where, and what to do.

Raise :class:`EdvrError` (or a subclass) for every expected failure (bad input, missing file, unknown name); the
CLI prints its message alone, without a traceback, and exits with a non-zero status.
"""

from __future__ import annotations


class EdvrError(Exception):
    """An expected failure whose message is the whole story for the user."""

    exit_code = 2


class InputError(EdvrError):
    """The input (file, folder, stream, option) is missing or unusable."""


class CheckpointError(EdvrError):
    """A weights file cannot be read, recognised or loaded into the model."""


class OutputError(EdvrError):
    """The output cannot be written (exists, not writable, no space, same as the input)."""
