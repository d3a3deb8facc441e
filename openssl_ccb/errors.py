"""Exceptions: one root, flat subclasses, and OpenSSL's error queue read into them."""

from __future__ import annotations

from ._binding import ffi, lib


class Error(Exception):
    """Root of openssl-ccb's exceptions.

    ``errors`` holds OpenSSL's error queue as it stood when the error was raised
    (already drained), as ``(library, reason, text)`` tuples.
    """

    def __init__(self, message: str = "", errors: list[tuple[str, str, str]] | None = None):
        self.errors: list[tuple[str, str, str]] = errors or []
        if self.errors:
            message = f"{message}: " + "; ".join(text for _, _, text in self.errors)
        super().__init__(message)


class WantX509Lookup(Error):
    """The client-certificate callback suspended the handshake; call it again."""


class WantRead(Error):
    """The non-blocking transport needs more data from the peer."""


class WantWrite(Error):
    """The non-blocking transport needs to flush data to the peer."""


def drain_error_queue() -> list[tuple[str, str, str]]:
    """Read and empty this thread's OpenSSL error queue."""
    errors: list[tuple[str, str, str]] = []
    buf = ffi.new("char[]", 256)
    while True:
        code = lib.ERR_get_error()
        if code == 0:
            return errors
        lib.ERR_error_string_n(code, buf, len(buf))
        library = lib.ERR_lib_error_string(code)
        reason = lib.ERR_reason_error_string(code)
        errors.append(
            (
                ffi.string(library).decode() if library != ffi.NULL else "",
                ffi.string(reason).decode() if reason != ffi.NULL else "",
                ffi.string(buf).decode(errors="replace"),
            )
        )


def error_from_queue(message: str, kind: type[Error] = Error) -> Error:
    """An exception carrying (and so draining) the error queue."""
    return kind(message, drain_error_queue())
