"""Exceptions raised by the tiler library; str(error) is a reason fit to show to users."""

from __future__ import annotations

__all__ = [
    "CorruptImage",
    "ImageTooLarge",
    "InvalidParameter",
    "OutOfRange",
    "StorageUnavailable",
    "TilerError",
    "UnsupportedFormat",
    "UnsupportedTileFormat",
]


class TilerError(Exception):
    """Base class of every error the tiler raises on purpose.

    ``str(error)`` is a complete, human-readable reason: the web layer shows it to users and
    maps each subclass to one HTTP status.
    """


class UnsupportedFormat(TilerError):
    """The file is not in a format any registered reader understands (sniffed from its bytes)."""


class CorruptImage(TilerError):
    """The file claims a supported format but is truncated or damaged."""


class ImageTooLarge(TilerError):
    """The image has more pixels than allowed (decompression-bomb guard)."""


class StorageUnavailable(TilerError):
    """The store holding the files (an S3 endpoint) cannot be reached or refuses the credentials."""


class OutOfRange(TilerError):
    """A requested level, tile or region does not exist; the message gives the valid range."""


class InvalidParameter(TilerError, ValueError):
    """A request parameter (plane, window, colour, gamma, ...) is malformed; the message says
    which values are valid."""


class UnsupportedTileFormat(TilerError, ValueError):
    """A tile was requested in an encoding the renderer does not produce."""
