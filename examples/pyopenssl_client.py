"""pyOpenSSL: the same callback, on whichever OpenSSL pyOpenSSL was built on.

pip's pyOpenSSL carries its own OpenSSL ("bundled" route: the callback is
installed through cryptography's binding); Debian's shares the system libssl
("same-libssl" route: the real client_cert_cb). The code is the same.
"""

from __future__ import annotations

import socket
import ssl
import threading

import trustme
from cryptography import x509
from OpenSSL import SSL, crypto

import openssl_ccb as ccb


def main() -> None:
    ca = trustme.CA()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            name = dict(item[0] for item in tls.getpeercert()["subject"])["commonName"]
            tls.sendall(f"hello {name}\n".encode())

    threading.Thread(target=serve, daemon=True).start()

    leaf = ca.issue_cert("carol@example.org", common_name="carol")
    cert = crypto.load_certificate(crypto.FILETYPE_PEM, leaf.cert_chain_pems[0].bytes())
    key = crypto.load_privatekey(crypto.FILETYPE_PEM, leaf.private_key_pem.bytes())

    def choose(request: ccb.CertificateRequest) -> tuple[crypto.X509, crypto.PKey]:
        conn_type = type(request.connection).__name__
        print(f"asked by {request.server_name} over {request.version}, on a {conn_type}")
        return cert, key  # pyOpenSSL objects are fine

    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.get_cert_store().add_cert(  # type: ignore[union-attr]
        crypto.X509.from_cryptography(x509.load_pem_x509_certificate(ca.cert_pem.bytes()))
    )
    ctx.set_verify(SSL.VERIFY_PEER, lambda conn, cert, errno, depth, ok: bool(ok))
    ccb.set_client_cert_cb(ctx, choose)  # before the first Connection
    print("route:", ccb.pyopenssl_route())

    sock = socket.create_connection(listener.getsockname())
    conn = SSL.Connection(ctx, sock)
    conn.set_connect_state()
    conn.set_tlsext_host_name(b"localhost")
    conn.do_handshake()
    print("server says:", conn.recv(64).decode().strip())
    conn.close()
    sock.close()
    listener.close()


if __name__ == "__main__":
    main()
