"""Lifetime and process events: interpreter shutdown with live
contexts, os.fork() in the middle of a handshake, and 10,000 contexts made
and dropped."""

from __future__ import annotations

import gc
import json
import os
import ssl
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path
from typing import Any

import pytest
from tlsutil import MemoryPair, client_context, finish, server_context
from worlds import Link, MemoryClient, MemoryServer
from worlds import client_context as world_context

import openssl_ccb as ccb
from openssl_ccb import ffi, lib
from openssl_ccb.core.state import live_contexts
from openssl_ccb.worlds import pyopenssl_bundled

TESTS = Path(__file__).resolve().parent

PRELUDE = f"""
import ssl, sys, threading
sys.path.insert(0, {str(TESTS)!r})
import trustme
from OpenSSL import SSL
import openssl_ccb as ccb
from openssl_ccb import lib
from tlsutil import MemoryPair, client_context, raw_client_ctx, server_context

ca = trustme.CA()
server_cert = ca.issue_cert("localhost")
leaf = ca.issue_cert("client@example.org")
credential = ccb.Credential.load(leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes())
"""


def run_script(body: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run PRELUDE + body in a fresh interpreter (cwd: a directory without the
    source tree, so the installed openssl_ccb is the one imported)."""
    script = PRELUDE + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


AT_EXIT = {
    "stdlib context": """
        ctx = client_context(ca)
        ccb.set_client_cert_cb(ctx, lambda request: credential)
        """,
    "raw context": """
        ctx = raw_client_ctx(ca)
        ccb.set_client_cert_cb(ctx, lambda request: credential)
        """,
    "raw context never freed": """
        ccb.set_client_cert_cb(lib.SSL_CTX_new(lib.TLS_client_method()), lambda request: None)
        """,
    "pyOpenSSL context": """
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ccb.set_client_cert_cb(ctx, lambda request: credential)
        """,
    "context in a reference cycle": """
        class Holder:
            pass

        holder = Holder()
        holder.ctx = client_context(ca)
        ccb.set_client_cert_cb(holder.ctx, lambda request: (holder, credential)[1])
        del holder
        """,
    "handshake suspended": """
        ctx = client_context(ca)
        ccb.set_client_cert_cb(ctx, lambda request: -1)
        pair = MemoryPair(server_context(ca, server_cert))
        client = pair.stdlib_client(ctx)
        try:
            pair.handshake(client)
        except ccb.WantX509Lookup:
            pass
        """,
    "thread inside the callback": """
        entered = threading.Event()

        def blocking(request):
            entered.set()
            threading.Event().wait()  # never answers

        ctx = client_context(ca)
        ccb.set_client_cert_cb(ctx, blocking)
        pair = MemoryPair(server_context(ca, server_cert))
        client = pair.stdlib_client(ctx)
        threading.Thread(target=pair.handshake, args=(client,), daemon=True).start()
        assert entered.wait(30)
        """,
}


@pytest.mark.parametrize("case", list(AT_EXIT))
def test_interpreter_exits_cleanly_with_live_contexts_and_callbacks(case, tmp_path):
    """Exit status 0 and nothing on stderr, whatever is alive at exit."""
    result = run_script(textwrap.dedent(AT_EXIT[case]) + "print('done')\n", tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "done\n", "")


def _suspended(pair: MemoryPair, client: ssl.SSLObject) -> None:
    for _ in range(10):
        try:
            client.do_handshake()
        except ssl.SSLWantReadError:
            pair.move()
            pair.server_step()
            pair.move()
        except ccb.WantX509Lookup:
            return
    raise AssertionError("the callback never suspended")


def test_fork_in_the_middle_of_a_handshake(ca, server_cert, credential, client_der):
    """Parent and child each finish their copy of a suspended handshake and
    make a new one on the shared context; the callback answers by process."""
    child_leaf = ca.issue_cert("child@example.org", common_name="the child")
    child_credential = ccb.Credential.load(
        child_leaf.cert_chain_pems[0].bytes(), child_leaf.private_key_pem.bytes()
    )
    parent = os.getpid()

    def choose(request: ccb.CertificateRequest) -> Any:
        if request.attempt == 1 and request.connection is first:
            raise ccb.WantX509Lookup()
        return credential if os.getpid() == parent else child_credential

    ctx = client_context(ca)
    ccb.set_client_cert_cb(ctx, choose)
    pair = MemoryPair(server_context(ca, server_cert))
    first = pair.stdlib_client(ctx)
    _suspended(pair, first)

    def both() -> list[str]:
        again = MemoryPair(server_context(ca, server_cert))
        ders = [finish(pair, first), finish(again, again.stdlib_client(ctx))]
        return [der.hex() if der else "" for der in ders]

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's cleanup
        code = 1
        try:
            os.write(write_end, json.dumps(both()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        from_child = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert json.loads(from_child) == [child_credential.certificate.hex()] * 2
    assert both() == [client_der.hex()] * 2


class Chooser:
    def __call__(self, request: ccb.CertificateRequest) -> Any:
        return None


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize("kind", ["stdlib", "raw", "pyopenssl"])
def test_ten_thousand_contexts_created_and_dropped(kind, ca, server_cert, credential, client_der):
    """Each with its own callback: every callback is released, no state is
    kept, memory stays flat, and the last context still works."""
    from OpenSSL import SSL

    def make() -> Any:
        if kind == "stdlib":
            return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if kind == "raw":
            return ffi.gc(lib.SSL_CTX_new(lib.TLS_client_method()), lib.SSL_CTX_free)
        return SSL.Context(SSL.TLS_CLIENT_METHOD)

    for _ in range(500):  # warm caches and allocator pools first
        ccb.set_client_cert_cb(make(), Chooser())
    gc.collect()
    kept = (live_contexts(), len(pyopenssl_bundled._bundled))
    before = _rss()
    refs = []
    for _ in range(10_000):
        ctx, chooser = make(), Chooser()
        ccb.set_client_cert_cb(ctx, chooser)
        refs.append(weakref.ref(chooser))
        del ctx, chooser
    gc.collect()
    assert sum(ref() is not None for ref in refs) == 0
    assert (live_contexts(), len(pyopenssl_bundled._bundled)) == kept
    growth = _rss() - before
    assert growth < 8 * 2**20, f"memory grew by {growth} bytes"  # an SSL_CTX alone is ~1 KiB+

    ctx = world_context(kind, ca)
    ccb.set_client_cert_cb(ctx, lambda request: credential)
    link = Link(MemoryClient(kind, ctx), MemoryServer(server_context(ca, server_cert)))
    link.handshake()
    link.exchange()
    assert link.server.peer_der() == client_der


def run_bare(script: str, tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``script`` alone in a fresh interpreter (nothing imported first)."""
    return subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", textwrap.dedent(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_fork_while_another_thread_sets_callbacks(tmp_path):
    """No lock of ours is held across fork(): every child can set a callback.
    (The child uses a context made before the fork: OpenSSL's own locks, which
    SSL_CTX_new takes, are not fork-safe, and not ours to fix.)"""
    result = run_bare(
        """
        import os, ssl, threading, time
        import openssl_ccb as ccb

        made = [ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT) for _ in range(300)]

        def setter():
            while True:
                ccb.set_client_cert_cb(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), lambda r: None)

        threading.Thread(target=setter, daemon=True).start()
        stuck = 0
        for ctx in made:
            pid = os.fork()
            if pid == 0:
                ccb.set_client_cert_cb(ctx, lambda r: None)
                os._exit(0)
            deadline = time.monotonic() + 10
            while os.waitpid(pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    stuck += 1
                    break
                time.sleep(0.001)
        print("stuck", stuck)
        """,
        tmp_path,
        timeout=600,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "stuck 0\n", "")


@pytest.mark.parametrize("lock", ["stdlib._proof_lock", "pyopenssl._patch_lock"])
def test_fork_while_another_thread_holds_a_module_lock(lock, tmp_path):
    """The child of a fork() made while another thread is inside the first
    libssl proof (or pyOpenSSL's patch) sets a callback and handshakes: the
    lock that thread held is fresh in the child. (Without it, 1 child in a
    few hundred hung in test_fork_while_another_thread_sets_callbacks.)"""
    module, name = lock.split(".")
    result = run_bare(
        f"""
        import os, ssl, threading, time, trustme
        from OpenSSL import SSL
        import openssl_ccb as ccb
        from openssl_ccb.worlds import {module}

        ca = trustme.CA()
        cert = ca.issue_cert("client@example.org")
        credential = ccb.Credential.load(
            cert.cert_chain_pems[0].bytes(), cert.private_key_pem.bytes()
        )
        held, release = threading.Event(), threading.Event()

        def holder():
            with {module}.{name}:
                held.set()
                release.wait()

        threading.Thread(target=holder, daemon=True).start()
        held.wait()
        pid = os.fork()
        if pid == 0:
            ctx = (
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                if "{module}" == "stdlib"
                else SSL.Context(SSL.TLS_CLIENT_METHOD)
            )
            ccb.set_client_cert_cb(ctx, lambda request: credential)
            os._exit(0 if ccb.get_client_cert_cb(ctx) is not None else 3)
        deadline = time.monotonic() + 20
        while (status := os.waitpid(pid, os.WNOHANG)) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                status = (pid, -1)
                break
            time.sleep(0.01)
        release.set()
        print("child", status[1])
        """,
        tmp_path,
        timeout=120,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "child 0\n", "")


def test_a_finalizer_that_sets_a_callback_during_set_client_cert_cb(tmp_path):
    """The garbage collector can run a finalizer inside set_client_cert_cb (on an
    allocation); a finalizer that itself sets a callback must not deadlock."""
    result = run_bare(
        """
        import gc, ssl
        import openssl_ccb as ccb

        ran = []

        class Setter:
            def __del__(self):
                ccb.set_client_cert_cb(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), lambda r: None)
                ran.append(1)

        def more_garbage(phase, info):
            # Each collection leaves a finalizer for the next one, which then
            # runs wherever the next allocation happens to be.
            if phase == "stop" and len(ran) < 100:
                garbage = Setter()
                garbage.cycle = garbage

        contexts = [ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT) for _ in range(300)]
        gc.callbacks.append(more_garbage)
        gc.set_threshold(1)  # collect on (nearly) every allocation
        for ctx in contexts:
            ccb.set_client_cert_cb(ctx, lambda r: None)
        gc.set_threshold(700)
        gc.callbacks.remove(more_garbage)
        gc.collect()
        print("finalizers", len(ran))
        """,
        tmp_path,
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "finalizers 100\n", "")


def test_a_subinterpreter_is_refused_and_leaves_the_main_one_working(tmp_path):
    """Importing openssl-ccb in a (legacy) subinterpreter fails clearly, before or
    after the main interpreter imports it; the main one still releases callables."""
    result = run_bare(
        """
        import gc, sys, weakref, _testcapi
        code = "import openssl_ccb"
        print("before", _testcapi.run_in_subinterp(code))
        import openssl_ccb as ccb
        from openssl_ccb import lib
        print("after", _testcapi.run_in_subinterp(code))

        class Chooser:
            def __call__(self, request):
                return None

        ctx = lib.SSL_CTX_new(lib.TLS_client_method())
        chooser = Chooser()
        ref = weakref.ref(chooser)
        ccb.set_client_cert_cb(ctx, chooser)
        del chooser
        lib.SSL_CTX_free(ctx)
        gc.collect()
        print("released", ref() is None)
        """,
        tmp_path,
    )
    assert result.stdout == "before -1\nafter -1\nreleased True\n", result.stderr
    message = "openssl-ccb runs only in the main interpreter, not in a subinterpreter"
    assert result.stderr.count(f"ImportError: {message}\n") == 2


def test_a_context_freed_by_an_atexit_handler_registered_earlier_releases_its_callable(
    tmp_path,
):
    """Handlers registered before openssl-ccb was imported run after its own."""
    result = run_bare(
        """
        import atexit, gc, weakref

        def free_at_exit():
            lib.SSL_CTX_free(ctx)
            gc.collect()
            print("released", ref() is None)

        atexit.register(free_at_exit)
        import openssl_ccb as ccb
        from openssl_ccb import lib

        class Chooser:
            def __call__(self, request):
                return None

        ctx = lib.SSL_CTX_new(lib.TLS_client_method())
        chooser = Chooser()
        ref = weakref.ref(chooser)
        ccb.set_client_cert_cb(ctx, chooser)
        del chooser
        """,
        tmp_path,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "released True\n", "")
