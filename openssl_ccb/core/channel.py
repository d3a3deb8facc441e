"""The exception channel: how a callback's exception gets back to whoever
drove the handshake, with its traceback.

OpenSSL calls the client-certificate callback synchronously, in the thread
that called ``SSL_do_handshake``/``SSL_read``/``SSL_write``. So:

1. The raw world's ``do_handshake``/``read``/``write`` push a ``Call`` on a
   thread-local stack before calling into OpenSSL.
2. Only when the callback fails does it look for where to report
   (``call_for``): the innermost ``Call`` of its thread that owns its
   ``SSL *``, else the world's ``finder`` on the context's state, which maps
   the ``SSL *`` to the user's connection object.
3. The exception is stashed there (``Call.fail``: the first one wins, it is
   the cause of everything after it), and OpenSSL is told to stop (the
   dispatch's FAIL code): the handshake never goes on without a certificate.
4. When OpenSSL returns, whoever drove it (the raw driver, a stdlib socket's
   wrapper, pyOpenSSL's ``_raise_ssl_error``) takes the exception
   (``take``) and re-raises it (``reraise``) in place of OpenSSL's own error.

The error-queue rule, in one place (``reraise``): the queue is drained before
the stored exception is raised, so a later call never sees its leftovers.
Nothing is stored on a shared context, so connections and threads never see
each other's errors; nothing is recorded on the success path.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, NoReturn

from .._binding import lib
from ..errors import drain_error_queue
from .state import state_of

ERROR_KEY = "_ccb_error"  # where a connection object keeps its stashed exception

_local = threading.local()


class Call:
    """One OpenSSL call in progress, as seen from the callback it triggers."""

    __slots__ = ("connection", "error", "ssl")

    def __init__(self, connection: object | None, ssl: Any = None) -> None:
        self.connection = connection  # the user's connection object, if any
        self.ssl = ssl  # the SSL * driven, where the driver knows it
        self.error: BaseException | None = None

    def owns(self, ssl: Any) -> bool:
        return self.ssl is not None and bool(self.ssl == ssl)

    def fail(self, exc: BaseException) -> None:
        if self.error is None:  # the first problem is the cause
            self.error = exc

    def failure(self) -> BaseException | None:
        """The callback's exception, else this thread's signer failure, kept."""
        if self.error is None:
            self.error = take_signer_failure()
        return self.error

    def raise_error(self) -> NoReturn:
        exc = self.error
        assert exc is not None
        self.error = None
        reraise(exc)


class ConnectionCall(Call):
    """A Call found for a connection object: the exception waits on the
    connection, where the world's wrapper takes it."""

    __slots__ = ()

    def fail(self, exc: BaseException) -> None:
        stash(self.connection, exc)


def stash(connection: Any, exc: BaseException) -> None:
    """Keep ``exc`` on ``connection`` until its driver takes it; the first wins."""
    slots = connection.__dict__
    if ERROR_KEY not in slots:
        slots[ERROR_KEY] = exc


def take(connection: Any) -> BaseException | None:
    """The exception stashed on ``connection`` (else this thread's signer
    failure), removed; None if there is none."""
    error: BaseException | None = connection.__dict__.pop(ERROR_KEY, None)
    return error if error is not None else take_signer_failure()


def signer_failed(exc: BaseException) -> None:
    """Keep a signer's exception for whoever drives this thread's OpenSSL call.

    A signer is called by OpenSSL with no ``SSL *`` (a key does not know its
    connection), but always inside the handshake call that signs, on its
    thread, and that call then fails: its driver takes the exception next
    (``take``, ``Call.failure``). The first one wins, as for a callback.
    """
    if getattr(_local, "signer_error", None) is None:
        _local.signer_error = exc


def take_signer_failure() -> BaseException | None:
    error: BaseException | None = getattr(_local, "signer_error", None)
    if error is not None:
        _local.signer_error = None
    return error


def reraise(exc: BaseException, clear_theirs: Callable[[], object] | None = None) -> NoReturn:
    """Raise a stashed exception unchanged, OpenSSL's queue drained first (and
    the other OpenSSL's, on pyOpenSSL's bundled route, through ``clear_theirs``)."""
    if clear_theirs is not None:
        clear_theirs()
    drain_error_queue()
    try:
        raise exc  # outside any except block: the user's exception as it was
    finally:
        del exc


def push(connection: object | None = None, ssl: Any = None) -> Call:
    call = Call(connection, ssl)
    try:
        _local.stack.append(call)
    except AttributeError:
        _local.stack = [call]
    return call


def pop(call: Call) -> None:
    stack: list[Call] = _local.stack
    # The innermost call is ours unless a callback leaked a push; find it anyway.
    if stack and stack[-1] is call:
        stack.pop()
    else:
        stack.remove(call)


def call_for(ssl: Any) -> Call | None:
    """Where the callback for ``ssl`` reports: the innermost owning Call, else
    what the world of ``ssl``'s context finds, else None."""
    stack: list[Call] | None = getattr(_local, "stack", None)
    if stack:
        for call in reversed(stack):
            if call.owns(ssl):
                return call
    state = state_of(lib.SSL_get_SSL_CTX(ssl))
    finder = None if state is None else state.finder
    found: Call | None = None if finder is None else finder(ssl)
    return found
