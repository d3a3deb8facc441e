"""openssl-ccb end to end: the client chooses its certificate at handshake time.

A local server accepts client certificates from two CAs (Globex and Initech)
and says so in its certificate request. The client holds certificates from
two CAs (Acme and Globex). Its callback reads the server's request and sends
the one certificate the server can accept.
"""

from __future__ import annotations

import socket
import ssl
import threading

import trustme

import openssl_ccb as ccb


def main() -> None:
    cas = {name: trustme.CA(organization_name=name) for name in ("Acme", "Globex", "Initech")}
    server_ca = trustme.CA(organization_name="Server CA")

    # The server: requires a client certificate from Globex or Initech.
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ca.issue_cert("localhost").configure_cert(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    for ca in (cas["Globex"], cas["Initech"]):
        ca.configure_trust(server_ctx)
        # Python cannot send a CA list; the server's SSL_CTX * can.
        name = ccb.credential.load_certificate(ca.cert_pem.bytes())
        ccb.lib.SSL_CTX_add_client_CA(ccb.ssl_ctx(server_ctx), name)

    listener = socket.create_server(("127.0.0.1", 0))
    received: list[str] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            subject = dict(item[0] for item in tls.getpeercert()["subject"])
            issuer = dict(item[0] for item in tls.getpeercert()["issuer"])
            received.append(f"{subject['commonName']} (issued by {issuer['organizationName']})")
            tls.sendall(b"welcome\n")

    thread = threading.Thread(target=serve)
    thread.start()

    # The client: a wallet of two certificates, chosen between at handshake time.
    credentials = []
    for name in ("Acme", "Globex"):
        leaf = cas[name].issue_cert("alice@example.org", common_name=f"alice at {name}")
        pem = leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes()
        credentials.append(ccb.Credential.load(*pem))
    wallet = ccb.Wallet(credentials)
    print("client wallet:")
    for credential in wallet:
        print(f"    {credential.subject}")

    def choose(request: ccb.CertificateRequest) -> ccb.Credential | None:
        print(f"server asked ({request.version}) for a certificate from:")
        for name in request.acceptable_ca_names:
            print(f"    {name}")
        chosen = wallet.choose(request)  # the first that request.supports()
        print(f"callback chose: {chosen.subject if chosen else 'nothing fits, no certificate'}")
        return chosen

    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    server_ca.configure_trust(client_ctx)
    ccb.set_client_cert_cb(client_ctx, choose)
    raw = socket.create_connection(listener.getsockname())
    with raw, client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        greeting = tls.recv(64)
    thread.join()
    listener.close()
    print(f"server received: {received[0]}")
    print(f"server replied:  {greeting.decode().strip()}")
    assert received[0].startswith("alice at Globex"), received


if __name__ == "__main__":
    main()
