"""``CertificateRequest.attempt`` counts the calls for one certificate request:
it restarts at 1 for each new request on a connection (a renegotiation, a
TLS 1.3 post-handshake request), not once per connection (issue 13: the
docs said otherwise; the behaviour stays, the docs now say this). And once
the callback has answered with a certificate, OpenSSL keeps it on the
connection: later requests get it without calling the callback."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
import test_post_handshake as post
from worlds import WORLDS, Link, MemoryClient, client_context, suspension

import openssl_ccb as ccb

SUSPEND = object()


def answering(*answers: Any) -> tuple[list[int], Any]:
    """A callback that gives ``answers`` in turn (``SUSPEND`` suspends), and the
    attempts it was called with."""
    attempts: list[int] = []
    queue = list(answers)

    def callback(request: ccb.CertificateRequest) -> Any:
        attempts.append(request.attempt)
        answer = queue.pop(0)
        if answer is SUSPEND:
            raise ccb.WantX509Lookup()
        return answer

    return attempts, callback


@pytest.fixture
def optional_pha_link(monkeypatch: pytest.MonkeyPatch) -> Any:
    """test_post_handshake's pha_link, but its server takes "no certificate" for an answer."""
    asking = post.pha_server

    def optional(ca: Any, server_cert: Any) -> ssl.SSLContext:
        ctx = asking(ca, server_cert)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx

    monkeypatch.setattr(post, "pha_server", optional)
    return post.pha_link


@pytest.mark.parametrize("world", WORLDS)
def test_each_post_handshake_request_starts_at_attempt_1(
    world, ca, server_cert, credential, client_der, optional_pha_link
):
    attempts, callback = answering(SUSPEND, None, SUSPEND, credential)
    link = optional_pha_link(world, ca, server_cert, callback)
    for request, sent in ((1, None), (2, client_der)):
        post.ask_after_handshake(link)
        with pytest.raises(suspension(world)):
            link.client.read()
        assert link.client.read() == b"now show me"
        link.move()
        link.exchange()
        assert attempts == [1, 2] * request
        assert link.server.peer_der() == sent


class OptionalRenegotiatingServer(post.RenegotiatingServer):
    def renegotiate_asking(self) -> None:
        """Renegotiate, asking for a certificate but taking none."""
        from OpenSSL import SSL

        self.tls.set_verify(SSL.VERIFY_PEER, lambda *args: bool(args[-1]))
        assert self.tls.renegotiate()
        self.tls.do_handshake()


@pytest.mark.parametrize("world", WORLDS)
def test_each_renegotiation_starts_at_attempt_1(world, ca, server_cert, credential, client_der):
    attempts, callback = answering(SUSPEND, None, SUSPEND, credential)
    ctx = client_context(world, ca, "TLSv1.2")
    ccb.set_client_cert_cb(ctx, callback)
    link = Link(MemoryClient(world, ctx), OptionalRenegotiatingServer(ca, server_cert))
    link.handshake()
    for request, sent in ((1, None), (2, client_der)):
        post.renegotiate_asking(link)
        with pytest.raises(suspension(world)):
            link.client.read()
        post.finish(link)
        link.exchange()
        assert attempts == [1, 2] * request
        assert link.server.peer_der() == sent


@pytest.mark.parametrize("world", WORLDS)
def test_a_certificate_sent_is_sent_again_without_a_call(
    world, ca, server_cert, credential, client_der
):
    attempts, callback = answering(credential)
    link = post.renegotiation_link(world, ca, server_cert, callback)
    for _ in range(2):  # each renegotiation requires a certificate, or fails
        post.renegotiate_asking(link)
        post.finish(link)
        link.exchange()
        assert link.server.peer_der() == client_der
    assert attempts == [1]
