"""Every code block in docs/ runs here, so the docs cannot rot.

A page's ``python`` blocks run in order, in one namespace, in a scratch
directory that holds what the docs say it holds (their hidden preamble):

* ``ca.pem``: the CA that issued the server's certificate;
* ``work.pem``/``work.key`` and ``home.pem``/``home.key``: client certificates
  from the "Work" and "Home" CAs;
* ``url`` (``host``, ``port``): an HTTPS server on 127.0.0.1 that asks for a
  client certificate, names the Work CA as the one it accepts, trusts both,
  and answers ``hello <common name>``;
* ``pha_port``: a TLS 1.3 server on ``host`` that asks for nothing in the
  handshake; after a first line from the client it asks (post-handshake
  authentication) and writes ``who are you?``, and after a second line it
  answers ``hello <common name>``.

A ``# prints: TEXT`` comment is a promise: TEXT is in what its block printed.
Shell blocks cannot run here (they install things); the names in them are
checked instead: each ``openssl-ccb[extra]`` exists, and each
``OPENSSL_CCB_*`` variable is one the project reads.
"""

from __future__ import annotations

import http.server
import re
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

import openssl_ccb as ccb
from openssl_ccb import lib

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]  # every code block runs
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
PRINTS = re.compile(r"#\s*prints:\s*(.+)$", re.M)


@dataclass
class Block:
    page: str
    line: int
    language: str
    code: str


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    return [
        Block(page.name, text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2))
        for m in FENCE.finditer(text)
    ]


# --- the hidden preamble -----------------------------------------------------


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        cert = self.connection.getpeercert()  # type: ignore[attr-defined]
        name = dict(item[0] for item in cert["subject"])["commonName"]
        body = f"hello {name}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """The handshake runs in the request's thread: a suspended client blocks no one."""

    daemon_threads = True
    tls: ssl.SSLContext

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(10)
        with self.tls.wrap_socket(request, server_side=True) as tls:
            self.RequestHandlerClass(tls, client_address, self)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that send no certificate are refused: that is the point


def serve_post_handshake(listener: socket.socket, tls: ssl.SSLContext) -> None:
    """Each connection: a line, a post-handshake request with ``who are you?``,
    a line (which brings the client's certificate), ``hello <common name>``."""
    while True:
        try:
            sock, _ = listener.accept()
        except OSError:
            return  # closed: the module is done
        sock.settimeout(10)
        try:
            with tls.wrap_socket(sock, server_side=True) as conn:
                conn.recv(100)
                conn.verify_client_post_handshake()
                conn.sendall(b"who are you?\n")  # the CertificateRequest goes first
                conn.recv(100)
                name = dict(item[0] for item in conn.getpeercert()["subject"])["commonName"]
                conn.sendall(f"hello {name}\n".encode())
        except OSError:
            pass  # a client that sends no certificate is refused


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    files = tmp_path_factory.mktemp("docs")
    server_ca = trustme.CA(organization_name="Example Server CA")
    cas = {name: trustme.CA(organization_name=name.title()) for name in ("work", "home")}
    server_ca.cert_pem.write_to_path(str(files / "ca.pem"))
    for name, ca in cas.items():
        leaf = ca.issue_cert(f"alice@{name}.example", common_name=f"alice at {name}")
        leaf.cert_chain_pems[0].write_to_path(str(files / f"{name}.pem"))
        leaf.private_key_pem.write_to_path(str(files / f"{name}.key"))

    # README's wallet: ~/.certs (HOME is this directory) and a PKCS#12 file.
    (files / ".certs").mkdir()
    for suffix in ("pem", "key"):
        (files / ".certs" / f"work.{suffix}").write_bytes((files / f"work.{suffix}").read_bytes())
    home = cas["home"].issue_cert("alice@home.example")
    (files / "me.p12").write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"me",
            serialization.load_pem_private_key(home.private_key_pem.bytes(), None),  # type: ignore[arg-type]
            x509.load_pem_x509_certificate(home.cert_chain_pems[0].bytes()),
            None,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )

    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ca.issue_cert("localhost", "127.0.0.1").configure_cert(tls)
    tls.verify_mode = ssl.CERT_REQUIRED
    for ca in cas.values():
        ca.configure_trust(tls)
    work_ca = ccb.credential.load_certificate(cas["work"].cert_pem.bytes())
    assert lib.SSL_CTX_add_client_CA(ccb.ssl_ctx(tls), work_ca) == 1

    pha = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ca.issue_cert("localhost", "127.0.0.1").configure_cert(pha)
    pha.minimum_version = ssl.TLSVersion.TLSv1_3
    pha.post_handshake_auth = True  # on a server: ask only when told to
    pha.verify_mode = ssl.CERT_REQUIRED
    for ca in cas.values():
        ca.configure_trust(pha)
    pha_listener = socket.create_server(("127.0.0.1", 0))
    pha_thread = threading.Thread(
        target=serve_post_handshake, args=(pha_listener, pha), daemon=True
    )
    pha_thread.start()

    server = Server(("127.0.0.1", 0), Hello)
    server.tls = tls
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    yield {
        "files": files,
        "names": {
            "url": f"https://localhost:{port}/",
            "host": "localhost",
            "port": port,
            "pha_port": pha_listener.getsockname()[1],
        },
    }
    server.shutdown()
    server.server_close()
    thread.join(10)
    pha_listener.shutdown(socket.SHUT_RDWR)
    pha_listener.close()
    pha_thread.join(10)


# --- the tests -----------------------------------------------------------------


def test_docs_exist_and_link_to_each_other():
    names = {page.name for page in PAGES}
    assert {"index.md", "quickstart.md", "callback.md", "lifetime.md", "libssl.md"} <= names
    assert {"recipes.md", "troubleshooting.md", "install.md"} <= names
    for page in PAGES:
        for target in re.findall(r"\]\(([\w.-]+\.md)(?:#[\w-]*)?\)", page.read_text()):
            assert target in names, f"{page.name} links to a missing page: {target}"


@pytest.mark.parametrize(
    "page", [p for p in PAGES if any(b.language == "python" for b in blocks(p))], ids=str
)
def test_page_runs(page: Path, world: dict[str, Any], monkeypatch, capsys) -> None:
    monkeypatch.chdir(world["files"])
    monkeypatch.setenv("HOME", str(world["files"]))
    namespace: dict[str, Any] = {"__name__": f"docs.{page.stem}", **world["names"]}
    for block in blocks(page):
        if block.language != "python":
            continue
        where = f"{block.page}:{block.line}"
        # Blank lines keep tracebacks' line numbers those of the page.
        code = compile("\n" * block.line + block.code, str(page), "exec")
        exec(code, namespace)
        printed = capsys.readouterr().out
        for promised in PRINTS.findall(block.code):
            assert promised.strip() in printed, f"{where}: did not print {promised!r}"


def _project_text() -> str:
    sources = [ROOT / "build_ffi.py", ROOT / "Makefile", *ROOT.glob("openssl_ccb/**/*.py")]
    sources += ROOT.glob("benchmarks/*.py")
    return "\n".join(path.read_text() for path in sources)


def test_shell_blocks_name_only_real_extras_and_variables():
    pyproject = (ROOT / "pyproject.toml").read_text()
    extras_section = pyproject.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    extras = set(re.findall(r"^([\w-]+)\s*=", extras_section, re.M))
    project = _project_text()
    shell = [b for page in PAGES for b in blocks(page) if b.language in ("sh", "console")]
    assert shell, "the install page shows how to install"
    for block in shell:
        for named in re.findall(r"openssl-ccb\[([\w,-]+)\]", block.code):
            for extra in named.split(","):
                assert extra in extras, f"{block.page}:{block.line}: no extra {extra!r}"
        for variable in re.findall(r"OPENSSL_CCB_[A-Z_]+", block.code):
            assert variable in project, f"{block.page}:{block.line}: nothing reads {variable}"


def test_every_block_says_its_language():
    """An untagged block would escape both checks above."""
    for page in PAGES:
        for block in blocks(page):
            assert block.language, f"{block.page}:{block.line}: a code block without a language"
