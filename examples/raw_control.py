"""The raw world: an SSL_CTX and SSL built and driven only through ccb.ffi/ccb.lib.

Client and server are both OpenSSL objects over memory BIOs in one process;
the client's certificate comes from a Python callback on a raw SSL_CTX *.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import trustme

import openssl_ccb as ccb
from openssl_ccb import ffi, lib


def new_ssl(ctx: object, server: bool) -> tuple[object, object, object]:
    """An SSL * with a memory BIO pair; returns (ssl, read_bio, write_bio)."""
    ssl = ffi.gc(lib.SSL_new(ctx), lib.SSL_free)
    rbio, wbio = lib.BIO_new(lib.BIO_s_mem()), lib.BIO_new(lib.BIO_s_mem())
    lib.SSL_set_bio(ssl, rbio, wbio)  # the SSL owns both BIOs from here
    (lib.SSL_set_accept_state if server else lib.SSL_set_connect_state)(ssl)
    return ssl, rbio, wbio


def move(source_wbio: object, target_rbio: object) -> None:
    pending = lib.BIO_ctrl_pending(source_wbio)
    if pending:
        buf = ffi.new("char[]", pending)
        n = lib.BIO_read(source_wbio, buf, pending)
        lib.BIO_write(target_rbio, buf, n)


def main() -> None:
    ca = trustme.CA()
    server_leaf, client_leaf = ca.issue_cert("localhost"), ca.issue_cert("raw@example.org")
    tmp = Path(tempfile.mkdtemp())
    for name, blob in {
        "server.pem": server_leaf.cert_chain_pems[0].bytes(),
        "server.key": server_leaf.private_key_pem.bytes(),
        "ca.pem": ca.cert_pem.bytes(),
    }.items():
        (tmp / name).write_bytes(blob)

    server_ctx = ffi.gc(lib.SSL_CTX_new(lib.TLS_server_method()), lib.SSL_CTX_free)
    lib.SSL_CTX_use_certificate_file(
        server_ctx, str(tmp / "server.pem").encode(), lib.SSL_FILETYPE_PEM
    )
    lib.SSL_CTX_use_PrivateKey_file(
        server_ctx, str(tmp / "server.key").encode(), lib.SSL_FILETYPE_PEM
    )
    lib.SSL_CTX_load_verify_locations(server_ctx, str(tmp / "ca.pem").encode(), ffi.NULL)
    lib.SSL_CTX_set_verify(
        server_ctx, lib.SSL_VERIFY_PEER | lib.SSL_VERIFY_FAIL_IF_NO_PEER_CERT, ffi.NULL
    )

    client_ctx = ffi.gc(lib.SSL_CTX_new(lib.TLS_client_method()), lib.SSL_CTX_free)
    credential = ccb.Credential.load(
        client_leaf.cert_chain_pems[0].bytes(), client_leaf.private_key_pem.bytes()
    )
    ccb.set_client_cert_cb(client_ctx, lambda request: credential)
    print("client_cert_cb installed:", lib.SSL_CTX_get_client_cert_cb(client_ctx) != ffi.NULL)

    client, c_r, c_w = new_ssl(client_ctx, server=False)
    server, s_r, s_w = new_ssl(server_ctx, server=True)
    done = {"client": False, "server": False}
    while not all(done.values()):
        for name, ssl in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    ccb.do_handshake(ssl)
                    done[name] = True
                except ccb.WantRead:
                    pass
        move(c_w, s_r)
        move(s_w, c_r)

    peer = lib.openssl_ccb_get1_peer_certificate(server)
    name = ccb.credential.name_to_string(lib.X509_get_subject_name(peer))
    lib.X509_free(peer)
    print("protocol:", ffi.string(lib.SSL_get_version(client)).decode())
    print("server verified the client:", lib.SSL_get_verify_result(server) == lib.X509_V_OK)
    print("server received:", name)
    assert name == credential.subject


if __name__ == "__main__":
    main()
