"""The return-code table, both ways.

=============================  ==========  ===================================
the Python callback returns    C returns   OpenSSL then
=============================  ==========  ===================================
``None`` or ``0``              0           sends no certificate
``(cert, key[, chain])``,      1           sends it (the chain on this
a ``Credential``                           connection only)
raises ``WantX509Lookup``,     -1          suspends: SSL_ERROR_WANT_X509_LOOKUP,
or a negative int                          the next handshake call calls again
raises anything else, or       -1          suspends; the driver re-raises the
returns anything else                      exception instead of "want lookup"
=============================  ==========  ===================================

A C function pointer answers the other way (``ForeignCallback``): 1 gives
``(X509 *, EVP_PKEY *)`` owned by Python, 0 gives None, negative raises
``WantX509Lookup``.
"""

from __future__ import annotations

from typing import Any

from .credential import Credential, coerce

SEND_NONE = 0
SEND = 1
SUSPEND = -1


def interpret(result: Any) -> Credential | int:
    """What a Python callback returned: a Credential to send, SEND_NONE or SUSPEND.

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
