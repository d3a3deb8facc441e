"""urllib3 (and so requests) through ssl.SSLContext: the callback picks the
client certificate for each HTTPS connection."""

from __future__ import annotations

import http.server
import ssl
import threading

import trustme
import urllib3

import openssl_ccb as ccb


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        cert = self.connection.getpeercert()  # type: ignore[attr-defined]
        body = f"hello {dict(item[0] for item in cert['subject'])['commonName']}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    ca = trustme.CA()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    httpd = http.server.HTTPServer(("127.0.0.1", 0), Hello)
    httpd.socket = server_ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    leaf = ca.issue_cert("bob@example.org", common_name="bob")
    credential = ccb.Credential.load(leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes())

    def choose(request: ccb.CertificateRequest) -> ccb.Credential:
        print(f"choosing a certificate for {request.server_name} ({request.version})")
        return credential

    client_ctx = ssl.create_default_context(cadata=ca.cert_pem.bytes().decode())
    ccb.set_client_cert_cb(client_ctx, choose)
    with urllib3.PoolManager(ssl_context=client_ctx) as pool:
        response = pool.request("GET", f"https://localhost:{httpd.server_address[1]}/")
    print(response.status, response.data.decode().strip())
    assert response.data == b"hello bob\n"
    httpd.shutdown()


if __name__ == "__main__":
    main()
