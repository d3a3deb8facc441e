"""1. Handshake overhead: the callback against the same certificate set statically.

Full handshakes in one process over memory BIOs; the server requires and
verifies a client certificate. Five clients per cell, timed side by side:

* ``static``: ``load_cert_chain`` (pyOpenSSL: ``use_certificate``/``use_privatekey``);
* ``C callback``: a plain C ``client_cert_cb`` set with ``SSL_CTX_set_client_cert_cb``,
  handing over the same certificate: what OpenSSL itself costs for a callback
  (not on pyOpenSSL's bundled route, whose OpenSSL is not ours);
* ``Python floor``: the least any Python callback can cost: OpenSSL calls a
  C callback that enters Python once (calling a one-argument function, as a
  trampoline must call the user's callable) and then hands the certificate
  over in C; on pyOpenSSL's bundled route, a cert_cb whose Python installs a
  fixed certificate through that OpenSSL's binding;
* ``Credential``: a callback returning one ``ccb.Credential``;
* ``Wallet``: ``ccb.Wallet([that credential])`` set as the callback, which
  openssl-ccb decides in C without entering Python (not on pyOpenSSL's
  bundled route, where Python decides);
* ``cryptography``: a callback returning the same ``cryptography`` objects.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import openssl_ccb as ccb

from . import cbench
from .pki import KEY_TYPES, PKI, Leaf
from .timing import Runner, interleave

MODES = ("static", "C callback", "Python floor", "Credential", "Wallet", "cryptography")
VERSIONS = ("TLSv1.3", "TLSv1.2")
_STDLIB_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}

Handshake = Callable[[], bytes | None]  # one full handshake; the DER the server received


def returning(leaf: Leaf, mode: str) -> Callable[[ccb.CertificateRequest], Any]:
    """The client-certificate callback of a mode."""
    if mode == "Wallet":
        return ccb.Wallet([ccb.Credential.load(leaf.cert_path, leaf.key_path)])
    if mode == "Credential":
        credential = ccb.Credential.load(leaf.cert_path, leaf.key_path)

        def callback(request: ccb.CertificateRequest) -> Any:
            return credential

    else:
        cert, key = leaf.cert, leaf.key

        def callback(request: ccb.CertificateRequest) -> Any:
            return cert, key

    return callback


def set_c_callback(pointer: Any, leaf: Leaf, mode: str = "C callback") -> None:
    """Set the plain C callback, or the Python floor, on an ``SSL_CTX *``,
    bypassing openssl-ccb entirely."""
    cbench.set_credential(*cbench.load_pair(leaf.cert_path, leaf.key_path))  # C up-refs them
    callback = (
        cbench.python_floor_callback()
        if mode == "Python floor"
        else cbench.c_callback("credential")
    )
    ccb.lib.SSL_CTX_set_client_cert_cb(pointer, callback)


# --- the standard library --------------------------------------------------------


def stdlib_server(pki: PKI, version: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server.cert_path, pki.server.key_path)
    ctx.load_verify_locations(pki.ca_path)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ctx.maximum_version = _STDLIB_VERSIONS[version]
    return ctx


def stdlib_client(pki: PKI, version: str, leaf: Leaf, mode: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.ca_path)
    ctx.minimum_version = ctx.maximum_version = _STDLIB_VERSIONS[version]
    if mode == "static":
        ctx.load_cert_chain(leaf.cert_path, leaf.key_path)
    elif mode in ("C callback", "Python floor"):
        set_c_callback(ccb.ssl_ctx(ctx), leaf, mode)
    else:
        ccb.set_client_cert_cb(ctx, returning(leaf, mode))
    return ctx


def stdlib_handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> Handshake:
    def handshake() -> bytes | None:
        c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
        server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
        client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
        client_done = server_done = False
        for _ in range(8):
            if not client_done:
                try:
                    client.do_handshake()
                    client_done = True
                except ssl.SSLWantReadError:
                    pass
            s_in.write(c_out.read())
            if not server_done:
                try:
                    server.do_handshake()
                    server_done = True
                except ssl.SSLWantReadError:
                    pass
            c_in.write(s_out.read())
            if client_done and server_done:
                return server.getpeercert(binary_form=True)
        raise RuntimeError("handshake did not finish")

    return handshake


# --- pyOpenSSL ---------------------------------------------------------------------


def pyopenssl_server(pki: PKI, version: str) -> Any:
    from OpenSSL import SSL

    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.use_certificate_chain_file(pki.server.cert_path)
    ctx.use_privatekey_file(pki.server.key_path)
    ctx.load_verify_locations(pki.ca_path)
    ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT)
    _bound(ctx, version)
    return ctx


def pyopenssl_client(pki: PKI, version: str, leaf: Leaf, mode: str) -> Any:
    from OpenSSL import SSL, crypto

    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.load_verify_locations(pki.ca_path)
    ctx.set_verify(SSL.VERIFY_PEER)
    _bound(ctx, version)
    if mode == "static":
        ctx.use_certificate(crypto.X509.from_cryptography(leaf.cert))
        ctx.use_privatekey(crypto.PKey.from_cryptography_key(leaf.key))
    elif mode == "Python floor" and ccb.pyopenssl_route() != "same-libssl":
        cbench.set_foreign_floor(ctx, leaf.cert_path, leaf.key_path)
    elif mode in ("C callback", "Python floor"):
        set_c_callback(ccb.ssl_ctx(ctx), leaf, mode)
    else:
        ccb.set_client_cert_cb(ctx, returning(leaf, mode))
    return ctx


def _bound(ctx: Any, version: str) -> None:
    from OpenSSL import SSL

    v = {"TLSv1.2": SSL.TLS1_2_VERSION, "TLSv1.3": SSL.TLS1_3_VERSION}[version]
    ctx.set_min_proto_version(v)
    ctx.set_max_proto_version(v)


def pyopenssl_handshake(server_ctx: Any, client_ctx: Any) -> Handshake:
    from OpenSSL import SSL, crypto

    want_read = SSL.WantReadError

    def handshake() -> bytes | None:
        server = SSL.Connection(server_ctx, None)
        server.set_accept_state()
        client = SSL.Connection(client_ctx, None)
        client.set_connect_state()
        client.set_tlsext_host_name(b"localhost")
        client_done = server_done = False
        for _ in range(8):
            if not client_done:
                try:
                    client.do_handshake()
                    client_done = True
                except want_read:
                    pass
            _move(client, server, want_read)
            if not server_done:
                try:
                    server.do_handshake()
                    server_done = True
                except want_read:
                    pass
            _move(server, client, want_read)
            if client_done and server_done:
                peer = server.get_peer_certificate()
                return None if peer is None else crypto.dump_certificate(crypto.FILETYPE_ASN1, peer)
        raise RuntimeError("handshake did not finish")

    return handshake


def _move(source: Any, sink: Any, want_read: type[Exception]) -> None:
    try:
        data = source.bio_read(16384)
    except want_read:
        return
    sink.bio_write(data)


# --- the section -------------------------------------------------------------------

WORLDS: dict[str, tuple[Callable[..., Any], Callable[..., Any], Callable[..., Handshake]]] = {
    "ssl": (stdlib_server, stdlib_client, stdlib_handshake),
    "pyOpenSSL": (pyopenssl_server, pyopenssl_client, pyopenssl_handshake),
}


def side_by_side(
    make_handshake: Callable[..., Handshake],
    server_ctx: Any,
    clients: dict[str, Any],
    leaf: Any,
    label: str,
    rounds: int,
    batch: int,
) -> Any:
    """Each client's handshakes against ``server_ctx``, interleaved; each first
    proves (and warms up) that the server receives ``leaf``'s certificate."""
    expected = leaf.cert.public_bytes(_der())
    runners: dict[str, Runner] = {}
    for mode, client in clients.items():
        handshake = make_handshake(server_ctx, client)
        for _ in range(3):  # warm-up, and proof that the server got the certificate
            if handshake() != expected:
                raise RuntimeError(f"{label} {mode}: wrong client certificate")
        runners[mode] = _repeat(handshake)
    return interleave(runners, rounds, batch)


def cell(
    pki: PKI, world: str, version: str, key_type: str, rounds: int, batch: int
) -> dict[str, Any]:
    """One cell: every mode, side by side, with ratios to ``static``."""
    make_server, make_client, make_handshake = WORLDS[world]
    leaf = pki.clients[key_type]
    server_ctx = make_server(pki, version)
    modes = [m for m in MODES if m != "C callback" or _c_callback_possible(world)]
    clients = {mode: make_client(pki, version, leaf, mode) for mode in modes}
    label = f"{world} {version} {key_type}"
    samples = side_by_side(make_handshake, server_ctx, clients, leaf, label, rounds, batch)
    return {
        "world": world,
        "version": version,
        "key": key_type,
        "handshakes_per_mode": rounds * batch,
        "us_median": {mode: round(samples.median(mode) / 1000, 1) for mode in modes},
        "ratio_to_static": {
            mode: samples.ratio(mode, "static").as_dict() for mode in modes if mode != "static"
        },
        # A Wallet decided in C against OpenSSL's own C callback (issue 15's target).
        "wallet_to_c_callback": samples.ratio("Wallet", "C callback").as_dict()
        if "C callback" in modes
        else None,
    }


def _c_callback_possible(world: str) -> bool:
    return world == "ssl" or ccb.pyopenssl_route() == "same-libssl"


def _der() -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


def _repeat(handshake: Handshake) -> Runner:
    def run(n: int) -> None:
        for _ in range(n):
            handshake()

    return run


def run(pki: PKI, rounds: int, batch: int, worlds: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        cell(pki, world, version, key_type, rounds, batch)
        for world in worlds
        for version in VERSIONS
        for key_type in KEY_TYPES
    ]
