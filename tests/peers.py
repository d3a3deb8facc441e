"""Peers nobody here wrote: ``openssl s_server`` and nginx, each started by a test
on a loopback ephemeral port and stopped after it.

Both report what they received and verified: s_server's ``-www`` status page
carries the client certificate (PEM) and its verify result; our nginx location
answers with ``$ssl_client_s_dn``, ``$ssl_client_verify`` and the certificate's
SHA-1 fingerprint.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path
from typing import IO

import pytest

# Debian puts nginx in /usr/sbin, which is not on a normal user's PATH.
_SBIN = os.pathsep.join(("/usr/local/sbin", "/usr/sbin", "/sbin"))
_PACKAGES = {"openssl": "openssl", "nginx": "nginx"}


def tool(name: str) -> str:
    """The path of a peer's program, from PATH or the sbin directories; a test
    without it fails in one line naming the Debian package (never skips)."""
    found = shutil.which(name) or shutil.which(name, path=_SBIN)
    if found is None:
        pytest.fail(
            f"{name} is not on PATH nor in {_SBIN.replace(os.pathsep, ', ')}:"
            f" install it (Debian: apt-get install {_PACKAGES[name]}, or make deps)",
            pytrace=False,
        )
    return found


_ACCEPT = re.compile(rb"^ACCEPT 127\.0\.0\.1:(\d+)$")
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)


class _Process:
    """A child process whose output is drained and kept, stopped on exit."""

    proc: subprocess.Popen[bytes]

    def __init__(self) -> None:
        self.output: list[bytes] = []
        self._threads: list[threading.Thread] = []

    def _drain(self, stream: IO[bytes]) -> None:
        def run() -> None:
            for line in stream:
                self.output.append(line)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for thread in self._threads:
            thread.join(10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    @property
    def log(self) -> str:
        return b"".join(self.output).decode(errors="replace")

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SServer(_Process):
    """``openssl s_server -www`` on 127.0.0.1, an ephemeral port; ``args`` are its options."""

    def __init__(self, cert_and_key: Path, *args: str) -> None:
        super().__init__()
        self.argv = [
            tool("openssl"),
            "s_server",
            "-accept",
            "127.0.0.1:0",
            "-cert",
            str(cert_and_key),
            "-www",
            *args,
        ]
        self.port = 0

    def __enter__(self) -> SServer:
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._drain(self.proc.stderr)
        # s_server prints ACCEPT once it listens: then the port is known and open.
        for line in self.proc.stdout:
            self.output.append(line)
            match = _ACCEPT.match(line.strip())
            if match:
                self.port = int(match.group(1))
                break
        else:
            self.stop()
            raise AssertionError(f"s_server did not start: {self.log}")
        self._drain(self.proc.stdout)
        return self


def page_certificate(page: bytes) -> bytes | None:
    """The client certificate (DER) that s_server's status page reports, or None."""
    found = _PEM.findall(page)
    if not found:
        assert b"no client certificate available" in page, page[-500:]
        return None
    (body,) = found
    return base64.b64decode(b"".join(body.split()))


def page_verify_code(page: bytes) -> int:
    """The verify result of the session, as s_server's status page prints it."""
    match = re.search(rb"Verify return code: (\d+)", page)
    assert match, page[-500:]
    return int(match.group(1))


NGINX_CONF = """
daemon off;
master_process on;
worker_processes 1;
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log notice;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {cert};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_verify_client {verify};
        {client_cas}
        location / {{
            return 200 "$ssl_client_s_dn|$ssl_client_i_dn|$ssl_client_verify|{more}\\n";
        }}
    }}
}}
"""


class Nginx(_Process):
    """nginx serving TLS on a loopback socket this process bound (port 0) and handed
    over as an inherited listener (the ``NGINX`` variable), so no port is guessed."""

    def __init__(
        self, workdir: Path, cert_and_key: Path, *, verify: str, client_cas: Path | None
    ) -> None:
        super().__init__()
        self.dir = workdir
        self.cert = cert_and_key
        self.verify = verify
        self.client_cas = client_cas
        self.port = 0

    def __enter__(self) -> Nginx:
        listener = socket.create_server(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        conf = self.dir / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                dir=self.dir,
                port=self.port,
                cert=self.cert,
                verify=self.verify,
                # As root, nginx would otherwise switch its worker to "nobody".
                user="user root root;" if os.geteuid() == 0 else "",
                more="$ssl_client_fingerprint|$ssl_protocol",
                client_cas=f"ssl_client_certificate {self.client_cas};" if self.client_cas else "",
            )
        )
        with listener:
            env = {**os.environ, "NGINX": f"{listener.fileno()};"}
            argv = [
                tool("nginx"),
                "-p",
                str(self.dir),
                "-c",
                str(conf),
                "-e",
                str(self.dir / "err.log"),
            ]
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                pass_fds=[listener.fileno()],
            )
        # The socket listens already: connections wait in its queue until nginx accepts.
        assert self.proc.stdout is not None
        self._drain(self.proc.stdout)
        return self

    @property
    def log(self) -> str:
        text = super().log
        for name in ("err.log", "error.log"):
            with contextlib.suppress(OSError):
                text += (self.dir / name).read_text(errors="replace")
        return text


def nginx_record(response: bytes) -> dict[str, str]:
    """What nginx recorded of the client certificate, from our location's answer."""
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), response
    fields = body.decode().strip().split("|")
    keys = ("subject", "issuer", "verify", "fingerprint", "protocol")
    return dict(zip(keys, fields))
