"""Suspend a handshake while the certificate is fetched, then resume it.

The callback raises ccb.WantX509Lookup until a background "token service"
has produced the certificate; the handshake surfaces that as an exception
that is both ccb.WantX509Lookup and ssl.SSLError, and the next
do_handshake() calls the callback again.
"""

from __future__ import annotations

import socket
import ssl
import threading

import trustme

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
            tls.sendall(f"hello {tls.getpeercert()['subject'][-1][0][1]}\n".encode())

    threading.Thread(target=serve, daemon=True).start()

    # The slow source of certificates: issues one on another thread.
    issued: list[ccb.Credential] = []
    ready = threading.Event()

    def token_service() -> None:
        leaf = ca.issue_cert("late@example.org", common_name="fetched late")
        issued.append(
            ccb.Credential.load(leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes())
        )
        ready.set()

    def callback(request: ccb.CertificateRequest) -> ccb.Credential:
        print(f"callback, attempt {request.attempt}")
        if request.attempt == 1:
            threading.Thread(target=token_service).start()
        if not ready.is_set():
            raise ccb.WantX509Lookup()
        return issued[0]

    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client_ctx)
    ccb.set_client_cert_cb(client_ctx, callback)

    raw = socket.create_connection(listener.getsockname())
    with client_ctx.wrap_socket(
        raw, server_hostname="localhost", do_handshake_on_connect=False
    ) as tls:
        while True:
            try:
                tls.do_handshake()
                break
            except ccb.WantX509Lookup as exc:
                # Also an ssl.SSLError, errno SSL_ERROR_WANT_X509_LOOKUP.
                print(f"handshake suspended (errno {exc.errno}); waiting for the certificate")
                ready.wait(10)
        print("server says:", tls.recv(64).decode().strip())
    listener.close()


if __name__ == "__main__":
    main()
