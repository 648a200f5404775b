"""Errors meant for people: one line that says what is wrong, where, and what to do.

Raise :class:`EdvrError` (or a subclass) for every expected failure (bad input, missing file, unknown name); the
CLI prints its message alone, without a traceback, and exits with a non-zero status.
"""

from __future__ import annotations


class EdvrError(Exception):
    """An expected failure whose message is the whole story for the user."""

    exit_code = 2

    def __str__(self) -> str:
        # Raised in a DataLoader worker, it reaches the main process as "Caught InputError in DataLoader worker
        # process 0.\nOriginal Traceback (most recent call last): ... edvr.errors.InputError: <message>": the
        # message is the traceback's last line.
        text = super().__str__()
        if text.startswith("Caught ") and "\nOriginal Traceback" in text:
            last = text.rstrip().rsplit("\n", 1)[-1]
            return last.split(": ", 1)[1] if last.startswith("edvr.errors.") and ": " in last else last
        return text


class InputError(EdvrError):
    """The input (file, folder, stream, option) is missing or unusable."""


class CheckpointError(EdvrError):
    """A weights file cannot be read, recognised or loaded into the model."""


class OutputError(EdvrError):
    """The output cannot be written (exists, not writable, no space, same as the input)."""
