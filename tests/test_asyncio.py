"""What asyncio does with a callback's exception, as docs/recipes.md says.

The exception always reaches the awaiting caller, itself. asyncio's transport
also reports a protocol's exception to the loop's exception handler when it
is not an ``OSError`` (asyncio takes any other exception from a protocol for
a bug); an ``OSError`` (``ssl.SSLError``, ``ConnectionError`` ...) is only
logged in debug mode. openssl-ccb cannot change that without replacing the
user's exception, which it never does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tlsutil import SocketServer, client_context, server_context

import openssl_ccb as ccb


class Refused(ConnectionError):
    """An OSError: what a callback raises to keep asyncio's log quiet."""


def _connect(ca: Any, server_cert: Any, exc: BaseException) -> tuple[BaseException, list[Any]]:
    """Raise ``exc`` from the callback of an asyncio connection; return what
    the caller caught and what the loop's exception handler was given."""
    reported: list[Any] = []

    def fail(request: ccb.CertificateRequest) -> None:
        raise exc

    with SocketServer(server_context(ca, server_cert)) as server:
        ctx = client_context(ca)
        ccb.set_client_cert_cb(ctx, fail)

        async def main() -> BaseException:
            asyncio.get_running_loop().set_exception_handler(
                lambda loop, context: reported.append(context)
            )
            try:
                await asyncio.open_connection(
                    "127.0.0.1", server.port, ssl=ctx, server_hostname="localhost"
                )
            except BaseException as caught:  # returned for the test to check
                return caught
            raise AssertionError("the handshake succeeded")

        caught = asyncio.run(main())
    return caught, reported


def test_a_callback_exception_reaches_the_caller_and_the_loop_handler_once(ca, server_cert):
    boom = RuntimeError("boom")
    caught, reported = _connect(ca, server_cert, boom)
    assert caught is boom
    assert [context.get("exception") for context in reported] == [boom]


def test_an_oserror_from_the_callback_reaches_the_caller_alone(ca, server_cert):
    refused = Refused("no certificate for you")
    caught, reported = _connect(ca, server_cert, refused)
    assert caught is refused
    assert reported == []
