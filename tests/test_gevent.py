"""gevent: under ``monkey.patch_all()``, ssl.SSLContext is
gevent's, whose SSLSocket hands ``_wrap_socket`` its raw socket as the owner.
A callback's exception and a suspension must still reach the greenlet that
drove the handshake, through plain ``ssl``, urllib and requests; and greenlets
that yield inside their callbacks, interleaved on other connections, each send
their own certificate.

Each scenario runs in a fresh interpreter: ``monkey.patch_all()`` must come
before any other import. The server is a gevent ``StreamServer`` in that same
interpreter (a thread-based server does not mix with monkey patching); it
requires a client certificate and answers with the SHA-256 of the one it got.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

PRELUDE = f"""
from gevent import monkey

monkey.patch_all()

import hashlib, json, socket, ssl, sys, traceback
sys.path.insert(0, {str(TESTS)!r})
import gevent, gevent.event, gevent.server, trustme
import openssl_ccb as ccb

unraisable = []
sys.unraisablehook = lambda report: unraisable.append(repr(report.exc_value))

ca = trustme.CA()
server_cert = ca.issue_cert("localhost")


def leaf(name):
    cert = ca.issue_cert(name)
    pem = cert.cert_chain_pems[0].bytes()
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem.decode())).hexdigest()
    return ccb.Credential.load(pem, cert.private_key_pem.bytes()), digest


credential, digest = leaf("client@example.org")

server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server_cert.configure_cert(server_ctx)
ca.configure_trust(server_ctx)
server_ctx.verify_mode = ssl.CERT_REQUIRED


def handle(conn, address):
    # An HTTP answer: the SHA-256 of the client's certificate.
    try:
        data = b""
        while b"\\r\\n\\r\\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        der = conn.getpeercert(binary_form=True)
        body = hashlib.sha256(der).hexdigest().encode() if der else b"none"
        head = b"HTTP/1.1 200 OK\\r\\nConnection: close\\r\\nContent-Length: %d\\r\\n\\r\\n"
        conn.sendall(head % len(body) + body)
    except (OSError, ValueError):
        pass  # a client whose callback failed: nothing to answer
    finally:
        conn.close()


server = gevent.server.StreamServer(("127.0.0.1", 0), handle, ssl_context=server_ctx)
server.start()
port = server.server_port
url = f"https://localhost:{{port}}/"

cafile = sys.argv[1] + "/ca.pem"
ca.cert_pem.write_to_path(cafile)
ctx = ssl.create_default_context(cafile=cafile)
assert type(ctx).__module__ in ("gevent.ssl", "gevent._ssl3"), type(ctx)  # the route under test


class Boom(Exception):
    pass


def answer(sock):
    sock.sendall(b"GET / HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n")
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data.split(b"\\r\\n\\r\\n", 1)[1].decode()
        data += chunk


def frames(exc):
    return [frame.name for frame in traceback.extract_tb(exc.__traceback__)]


result = {{}}
"""

EPILOGUE = """
result["unraisable"] = unraisable
print(json.dumps(result))
"""


def run_gevent(body: str, tmp_path: Path) -> dict:
    """Run PRELUDE + body + EPILOGUE in a fresh interpreter; its JSON result."""
    script = PRELUDE + textwrap.dedent(body) + EPILOGUE
    done = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", script, str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr
    result: dict = json.loads(lines[-1])
    assert result.pop("unraisable") == [], done.stderr
    return result


CLIENTS = {
    "ssl": """
        def fetch():
            with socket.create_connection(("127.0.0.1", port)) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
                    result["class"] = [cls.__module__ for cls in type(sock).__mro__]
                    return answer(sock)
        """,
    "urllib": """
        import urllib.request

        def fetch():
            with urllib.request.urlopen(url, context=ctx, timeout=30) as response:
                return response.read().decode()
        """,
    "requests": """
        import requests
        from requests.adapters import HTTPAdapter

        class Adapter(HTTPAdapter):
            def init_poolmanager(self, *args, **kwargs):
                kwargs["ssl_context"] = ctx
                super().init_poolmanager(*args, **kwargs)

        session = requests.Session()
        session.mount("https://", Adapter())

        def fetch():
            return session.get(url, timeout=30, verify=cafile).text
        """,
}


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_certificate_sent(client, tmp_path):
    """The callback's certificate reaches the server through gevent's sockets."""
    result = run_gevent(
        CLIENTS[client]
        + """
        ccb.set_client_cert_cb(ctx, lambda request: credential)
        result["got"] = fetch()
        result["sent"] = digest
        """,
        tmp_path,
    )
    assert result["got"] == result["sent"]
    if client == "ssl":
        assert {"gevent.ssl", "gevent._ssl3"} & set(result["class"])


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_callback_exception_reaches_the_greenlet(client, tmp_path):
    """A callback's exception is raised, with its traceback, in the greenlet
    that drove the handshake: not sent to sys.unraisablehook, and not replaced
    by a bare SSLError."""
    result = run_gevent(
        CLIENTS[client]
        + """
        def choose(request):
            raise Boom("from the callback")

        ccb.set_client_cert_cb(ctx, choose)

        def driver():
            try:
                fetch()
            except Boom as exc:
                return {"raised": "Boom", "frames": frames(exc)}
            except BaseException as exc:
                return {"raised": repr(exc), "frames": frames(exc)}
            return {"raised": None}

        result.update(gevent.spawn(driver).get())
        """,
        tmp_path,
    )
    assert result["raised"] == "Boom", result
    assert "choose" in result["frames"]


def test_suspension_is_want_x509_lookup(tmp_path):
    """A suspension surfaces as SSLWantX509Lookup from gevent's do_handshake;
    the next do_handshake calls the callback again and completes."""
    result = run_gevent(
        """
        from openssl_ccb import SSLWantX509Lookup

        def choose(request):
            if request.attempt == 1:
                raise ccb.WantX509Lookup()
            return credential

        ccb.set_client_cert_cb(ctx, choose)
        with socket.create_connection(("127.0.0.1", port)) as raw:
            with ctx.wrap_socket(
                raw, server_hostname="localhost", do_handshake_on_connect=False
            ) as sock:
                try:
                    sock.do_handshake()
                except ccb.WantX509Lookup as exc:
                    result["first"] = [type(exc).__name__, isinstance(exc, ssl.SSLError),
                                       exc.errno == ssl.SSL_ERROR_WANT_X509_LOOKUP]
                sock.do_handshake()
                result["got"] = answer(sock)
        result["sent"] = digest
        """,
        tmp_path,
    )
    assert result["first"] == ["SSLWantX509Lookup", True, True]
    assert result["got"] == result["sent"]


def test_interleaved_greenlets_each_get_their_certificate(tmp_path):
    """Eight greenlets handshake at once on one context; each callback yields
    until all eight are inside a callback, then they leave first-in first-out
    (not nested), each returning its own greenlet's credential, and one raises.
    Every greenlet gets its own certificate (checked by the server), and only
    the raising one gets the exception."""
    result = run_gevent(
        """
        N, RAISER = 8, 3
        leaves = [leaf(f"client{i}@example.org") for i in range(N)]
        mine = {}
        inside = []
        all_inside = gevent.event.Event()
        order = []

        def choose(request):
            index = mine[gevent.getcurrent()]
            inside.append(index)
            if len(inside) == N:
                all_inside.set()
            all_inside.wait(timeout=30)
            for _ in range(inside.index(index) * 3):  # first in leaves first
                gevent.sleep(0)
            order.append(index)
            if index == RAISER:
                raise Boom(f"greenlet {index}")
            return leaves[index][0]

        ccb.set_client_cert_cb(ctx, choose)

        def client(index):
            mine[gevent.getcurrent()] = index
            try:
                with socket.create_connection(("127.0.0.1", port)) as raw:
                    with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
                        return answer(sock) == leaves[index][1]
            except Boom as exc:
                return str(exc)

        greenlets = [gevent.spawn(client, i) for i in range(N)]
        gevent.joinall(greenlets, timeout=60, raise_error=True)
        result["outcomes"] = [g.get() for g in greenlets]
        result["all_inside"] = all_inside.is_set()
        result["entered"] = inside
        result["left"] = order
        """,
        tmp_path,
    )
    assert result["all_inside"]
    assert result["left"] == result["entered"]  # FIFO: the last to enter is not the first out
    expected = [True] * 8
    expected[3] = "greenlet 3"
    assert result["outcomes"] == expected


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_failing_handshakes_leave_no_descriptor_open(client, tmp_path):
    """A callback that raises inside gevent's wrap_socket: after 100 such
    handshakes, as many file descriptors are open as before (the exception's
    traceback must not keep the socket)."""
    result = run_gevent(
        CLIENTS[client]
        + """
        import gc, os

        def choose(request):
            raise Boom("from the callback")

        ccb.set_client_cert_cb(ctx, choose)

        def failures(count):
            raised = 0
            for _ in range(count):
                try:
                    fetch()
                except Exception as exc:  # urllib and requests wrap it
                    raised += "from the callback" in repr(exc) or "Boom" in repr(exc.__context__)
            gc.collect()
            gevent.sleep(0.1)  # the server closes its side
            return raised

        failures(5)
        before = len(os.listdir("/proc/self/fd"))
        result["raised"] = failures(100)
        result["fds"] = [before, len(os.listdir("/proc/self/fd"))]
        """,
        tmp_path,
    )
    assert result["raised"] == 100
    assert result["fds"][1] == result["fds"][0]
