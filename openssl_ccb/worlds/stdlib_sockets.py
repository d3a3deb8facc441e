"""The standard library's connection classes, made to surface a callback's
outcome: a stashed exception is re-raised by the call that drove the
handshake, a suspension becomes ``SSLWantX509Lookup``.

``CCBSSLSocket`` and a user's own ``sslsocket_class`` get ``Driven``, a
wrapper per entry point. ``CCBSSLObject`` is the fast path: the bodies of
``ssl.SSLObject``'s methods inside a try, not a call to them (a memory-BIO
handshake, as asyncio drives it, calls these several times, and the extra
frame on each was measured at 0.5% of a handshake); tests/test_stdlib.py
checks that those bodies are still the running interpreter's.
"""

from __future__ import annotations

import ssl
import threading
import weakref
from typing import Any, Callable

from ..core import channel
from ..errors import WantX509Lookup


class SSLWantX509Lookup(WantX509Lookup, ssl.SSLError):
    """A suspended handshake on a standard-library socket or object.

    Both ``ccb.WantX509Lookup`` and ``ssl.SSLError`` with
    ``errno == ssl.SSL_ERROR_WANT_X509_LOOKUP``.
    """

    def __init__(self, message: str = "the client-certificate callback suspended the handshake"):
        ssl.SSLError.__init__(self, ssl.SSL_ERROR_WANT_X509_LOOKUP, message)
        self.errors = []


def _outcome(error: BaseException | None, exc: BaseException) -> BaseException | None:
    """After a failed call: what to raise instead of ``exc``, if anything.

    ``error`` is what the callback stored on the connection, popped by the
    caller in its argument list (so a KeyboardInterrupt from a signal handler
    run as this function is entered cannot leave it behind). Only an
    ``SSLError`` can be the failure the callback caused; anything else (a
    KeyboardInterrupt raised on the way out, a user subclass's own exception)
    supersedes it, and it is dropped: it must never surface from a later,
    unrelated failure. A suspension raises ``SSLWantX509Lookup``.
    """
    if not isinstance(exc, ssl.SSLError):
        return None
    if error is None and exc.errno == ssl.SSL_ERROR_WANT_X509_LOOKUP:
        raise SSLWantX509Lookup() from None
    return error


# Only a plain SSLError (want X509 lookup, or a failure) can carry the
# callback's outcome; these are passed on untouched.
_ROUTINE = (ssl.SSLWantReadError, ssl.SSLWantWriteError)


def _surfacing(cls: type, name: str) -> Callable[..., Any]:
    """``cls``'s override of ``name``: the base's method, its outcome surfaced.

    A call that succeeds pays one frame and a try; nothing is recorded.
    """

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:  # gevent: send(..., timeout=)
        try:
            return getattr(super(cls, self), name)(*args, **kwargs)
        except _ROUTINE:
            raise
        except BaseException as exc:
            error = _outcome(channel.take(self), exc)
            if error is None:
                raise
        channel.reraise(error)

    method.__name__ = method.__qualname__ = name
    return method


class Driven:
    """Entry points that can run the callback, wrapped so its outcome surfaces
    (below). ``unwrap`` is one though OpenSSL 3.0 ignores a certificate request
    that arrives after close_notify was sent (tested): the wrapper costs a
    frame per shutdown, and would carry the outcome if that ever changed."""

    _sslobj: Any


for _name in ("do_handshake", "read", "write", "unwrap"):
    setattr(Driven, _name, _surfacing(Driven, _name))


_creating = threading.local()


class DrivenSocket(Driven):
    def do_handshake(self, *args: Any) -> None:
        depth = getattr(_creating, "depth", 0)
        if not depth:
            return super().do_handshake(*args)  # type: ignore[misc,no-any-return]
        # Inside wrap_socket(). A handshake that the callback drives from in
        # here (and that is refused) is not wrap_socket's: it must not close
        # the socket that the outer handshake is still using.
        _creating.depth = 0
        try:
            super().do_handshake(*args)  # type: ignore[misc]
        except BaseException as exc:
            # wrap_socket() closes its new socket when the handshake raises
            # OSError or ValueError; close it for a callback's exception too,
            # or nobody could (the caller never gets the socket).
            if not isinstance(exc, (OSError, ValueError)):
                self.close()  # type: ignore[attr-defined]
            raise
        finally:
            _creating.depth = depth

    @classmethod
    def _create(cls, *args: Any, **kwargs: Any) -> Any:
        _creating.depth = getattr(_creating, "depth", 0) + 1
        try:
            return super()._create(*args, **kwargs)  # type: ignore[misc]
        finally:
            _creating.depth -= 1


DrivenSocket.send = _surfacing(DrivenSocket, "send")  # type: ignore[attr-defined]  # bypasses write


class CCBSSLSocket(DrivenSocket, ssl.SSLSocket):
    """``ssl.SSLSocket`` whose handshakes report the callback's outcome."""


class CCBSSLObject(ssl.SSLObject):
    """``ssl.SSLObject`` whose handshakes report the callback's outcome.

    The methods are ``ssl.SSLObject``'s own bodies (the same in CPython 3.9
    to 3.13) inside a try, not a call to them: a memory-BIO handshake, as
    asyncio drives it, calls these several times, and an extra frame on
    each (with an SSLWantReadError passing through it) was measured at
    0.5% of a handshake. A user's own subclass gets ``Driven`` instead.
    """

    _sslobj: Any

    def do_handshake(self) -> None:
        try:
            return self._sslobj.do_handshake()  # type: ignore[no-any-return]
        except _ROUTINE:
            raise
        except BaseException as exc:
            error = _outcome(channel.take(self), exc)
            if error is None:
                raise
        channel.reraise(error)

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        try:
            if buffer is not None:
                return self._sslobj.read(len, buffer)
            return self._sslobj.read(len)
        except _ROUTINE:
            raise
        except BaseException as exc:
            error = _outcome(channel.take(self), exc)
            if error is None:
                raise
        channel.reraise(error)

    def write(self, data: Any) -> int:
        try:
            return self._sslobj.write(data)  # type: ignore[no-any-return]
        except _ROUTINE:
            raise
        except BaseException as exc:
            error = _outcome(channel.take(self), exc)
            if error is None:
                raise
        channel.reraise(error)

    def unwrap(self) -> Any:
        try:
            return self._sslobj.shutdown()
        except _ROUTINE:
            raise
        except BaseException as exc:
            error = _outcome(channel.take(self), exc)
            if error is None:
                raise
        channel.reraise(error)


SURFACING = (Driven, CCBSSLObject)  # the classes whose calls re-raise a stored exception

# base -> weakref(derived): the derived class refers to its base, so a strong
# value would keep the key alive; the contexts that use it keep it alive.
_derived: weakref.WeakKeyDictionary[type, weakref.ref[type]] = weakref.WeakKeyDictionary()


def derive(base: type, ours: type, mixin: type) -> type:
    # Keep a user's own sslsocket_class/sslobject_class, with ours on top.
    if issubclass(base, SURFACING):
        return base
    if base in (ssl.SSLSocket, ssl.SSLObject):
        return ours
    ref = _derived.get(base)
    cls = None if ref is None else ref()
    if cls is None:
        cls = type(f"CCB{base.__name__}", (mixin, base), {})
        _derived[base] = weakref.ref(cls)
    return cls
