"""Typed errors of the data modules: each message is one line a user can act on."""

from __future__ import annotations


class DataError(Exception):
    """Base of every error raised by the data modules, so a CLI can catch them all."""


class DatasetUnavailableError(DataError, RuntimeError):
    """The data is not on disk and cannot be fetched here (offline, missing file)."""


class TorchvisionUnavailableError(DatasetUnavailableError):
    """torchvision, needed by this dataset, is missing or does not load beside this torch."""


class InvalidDatasetError(DataError, ValueError):
    """The data or the options given are unusable (wrong keys, shapes, labels, fractions)."""


class UnknownDatasetError(DataError, ValueError):
    """No data module is registered under the name asked for."""


class UnreadableImageError(InvalidDatasetError):
    """An image file that cannot be read or decoded; the message names the file."""

    def __init__(self, message: str) -> None:
        # An error raised in a DataLoader worker is raised again in the main process as
        # type(error)(text), where torch's text is a header, the worker's traceback and, last,
        # this class's own line: the user needs only that line (the file and the reason).
        own_line = f"{type(self).__name__}: "
        if message.startswith("Caught ") and own_line in message:
            message = message[message.rindex(own_line) + len(own_line) :].strip()
        super().__init__(message)


class DatasetWarning(UserWarning):
    """Data that trains, but likely not as the user meant (labels that skip classes)."""


def first_line(error: BaseException) -> str:
    """The part of an error's message that fits a one-line report."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
