"""The return-code table: what a callable's answer means, for each kind of
OpenSSL callback that runs it.

=============================  ========  ===================================
the Python callable            outcome   OpenSSL then
=============================  ========  ===================================
returns ``None`` or ``0``      NONE      sends no certificate
returns ``(cert, key[,         SEND      sends it (the chain on this
chain])`` or a ``Credential``            connection only)
raises ``WantX509Lookup``,     SUSPEND   SSL_ERROR_WANT_X509_LOOKUP; the next
or returns a negative int                handshake call calls it again
raises anything else, or       FAIL      the handshake stops; the exception
returns anything else                    reaches its driver (``channel``)
=============================  ========  ===================================

Each outcome is a different return code for each callback kind (``CODES``):
``client_cert_cb`` (the trampoline) and ``cert_cb`` (pyOpenSSL's bundled
route, where OpenSSL's own ``client_cert_cb`` cannot be reached). A
``client_cert_cb`` cannot fail a handshake, so FAIL suspends it and the
driver raises the stored exception instead of "want lookup".

A C function pointer answers the other way (``ForeignCallback``): 1 gives
``(X509 *, EVP_PKEY *)`` owned by Python, 0 gives None, negative raises
``WantX509Lookup``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Union

from .._binding import lib
from .._cache import coerce
from ..credential import Credential
from ..errors import Error, WantX509Lookup, error_from_queue

SEND_NONE = 0  # the outcome NONE
SUSPEND = -1  # the outcome SUSPEND
Outcome = Union[Credential, int]  # SEND is the Credential itself


class Codes(NamedTuple):
    """The C return code of each outcome, for one kind of callback."""

    send: int
    none: int
    suspend: int
    fail: int


CODES = {
    "client_cert_cb": Codes(send=1, none=0, suspend=-1, fail=-1),
    # cert_cb: 1 with nothing set sends none; 0 is a fatal alert.
    "cert_cb": Codes(send=1, none=1, suspend=-1, fail=0),
}


def answer(callback: Any, request: Any) -> Outcome:
    """Run ``callback(request)``: a Credential to send, SEND_NONE or SUSPEND.

    Raises for FAIL (the callable's exception, or TypeError/ValueError/
    ccb.Error for an answer that is none). Runs inside every handshake: the
    common answers (None, a Credential) take no call beyond the callable's.
    """
    try:
        result = callback(request)
    except WantX509Lookup:
        return SUSPEND
    if result is None:
        return SEND_NONE
    if type(result) is Credential:
        return result
    return interpret(result)


def interpret(result: Any) -> Outcome:
    """What a callable returned: a Credential to send, SEND_NONE or SUSPEND.

    Raises TypeError/ValueError/ccb.Error for anything unusable.
    """
    if isinstance(result, Credential):
        return result
    if result is None:
        return SEND_NONE
    if isinstance(result, tuple):
        if len(result) not in (2, 3):
            raise TypeError(
                "the client certificate callback returned a tuple of "
                f"{len(result)} items; expected (cert, key) or (cert, key, chain)"
            )
        return coerce(*result)
    if type(result) is int:  # bool is an int, but True is no answer: refuse it
        if result == 0:
            return SEND_NONE
        if result < 0:
            return SUSPEND
        raise ValueError(
            f"the client certificate callback returned {result}; a positive "
            "answer needs a certificate: return (cert, key) or a Credential"
        )
    raise TypeError(
        "the client certificate callback returned "
        f"{type(result).__name__}; expected None, (cert, key), (cert, key, chain), "
        "a Credential, or an int"
    )


# What the C trampoline passes as the attempt when it must not call the
# callable; each is refused with an Error that says why.
REENTERED = lib.OPENSSL_CCB_REENTERED
NO_MEMORY = lib.OPENSSL_CCB_NO_MEMORY
REFUSED = lib.OPENSSL_CCB_REFUSED


def refusal(attempt: int) -> Error:
    if attempt == REENTERED:
        return Error(
            "the client-certificate callback drove its own connection's handshake "
            "(do_handshake, read or write on the connection it is answering for): "
            "OpenSSL cannot re-enter a handshake from inside its callback; "
            "return the answer instead"
        )
    if attempt == REFUSED:  # OpenSSL refused what the callable answered
        return error_from_queue("could not hand the certificate over to the connection")
    if attempt == NO_MEMORY:
        return Error("out of memory entering the client-certificate callback")
    return Error("the openssl-ccb trampoline was installed on a context it does not manage")
