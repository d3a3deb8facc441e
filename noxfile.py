"""Every Python openssl-ccb supports, each in a fresh venv: ``nox`` (``make test-all``).

* ``tests-3.9`` ... ``tests-3.13``: the whole suite against the package as pip
  installs it (built for that interpreter, not the source tree's build), with
  pip's pyOpenSSL and cryptography (the "bundled" route).
* ``pypy``: Debian's ``pypy3``; what works there and what is refused
  (tests/test_interpreters.py).
* ``packaging``: once, the slow tests: sdist and wheel, an isolated install
  into a fresh venv, a failing build's message (tests/test_packaging.py).
* ``pyopenssl23``: the oldest pyOpenSSL supported (23.x, before
  ``Context._used``) on its bundled OpenSSL: tests/test_pyopenssl.py.

Every session that runs the suite installs ``.[test]``, which holds PyKCS11
(tests/test_pkcs11.py; Debian's softhsm2 gives the token). ``pypy`` runs only
tests/test_interpreters.py: neither PKCS#11 library has a PyPy wheel.

Interpreters come from pyenv's versions ($PYENV_ROOT or ~/.pyenv) first, then PATH.
A missing interpreter is an error, never a skip.
"""

from __future__ import annotations

import glob
import os

import nox

PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]

nox.options.sessions = ["tests", "pypy", "packaging", "pyopenssl23"]
nox.options.error_on_missing_interpreters = True
nox.options.default_venv_backend = "venv"


def _pyenv_bins() -> list[str]:
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = glob.glob(os.path.join(root, "versions", "3.*", "bin"))

    def version(path: str) -> list[int]:
        return [int(part) for part in path.split(os.sep)[-2].split(".") if part.isdigit()]

    return sorted(found, key=version, reverse=True)  # newest patch release first


os.environ["PATH"] = os.pathsep.join([*_pyenv_bins(), os.environ.get("PATH", "")])


def _pytest(session: nox.Session, *args: str, files: tuple[str, ...] = ()) -> None:
    # From a scratch directory, so the source tree's openssl_ccb (built for
    # .venv) is never the one imported: the installed package is.
    tests = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tests")
    paths = [os.path.join(tests, name) for name in files] or [tests]
    config = os.path.join(os.path.dirname(tests), "pyproject.toml")
    with session.chdir(session.create_tmp()):
        session.run(
            "python",
            "-c",
            "import openssl_ccb, sys; "
            "assert 'site-packages' in openssl_ccb.__file__, openssl_ccb.__file__; "
            "print('openssl-ccb', openssl_ccb.__version__, 'from', openssl_ccb.__file__)",
        )
        session.run(
            "pytest", "-c", config, "--rootdir", os.path.dirname(tests), "-p", "no:cacheprovider",
            *args, *paths, env={"OPENSSL_CCB_EXPECT_ROUTE": "bundled"},
        )  # fmt: skip


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole suite, on one CPython."""
    session.install(".[test]")
    _pytest(session, *session.posargs)


@nox.session(python="pypy3")
def pypy(session: nox.Session) -> None:
    """PyPy: the raw world works; its ssl.SSLContext is refused (a test says so)."""
    session.install(".", "pytest")
    tests = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tests")
    # --noconftest: the suite's conftest needs trustme and cryptography,
    # which PyPy does not need here.
    with session.chdir(session.create_tmp()):
        session.run(
            "pytest", "--noconftest", "-p", "no:cacheprovider", "-o", "addopts=-ra",
            os.path.join(tests, "test_interpreters.py"), *session.posargs,
        )  # fmt: skip


@nox.session(python="3.12")
def packaging(session: nox.Session) -> None:
    """Build, install from the sdist into a fresh venv, check what ships: once."""
    session.install(".[test]", "build", "mypy")
    _pytest(session, "-m", "packaging", *session.posargs)


@nox.session(python="3.11")
def pyopenssl23(session: nox.Session) -> None:
    """pyOpenSSL 23 (no ``Context._used``) from PyPI, with a cryptography it supports."""
    session.install(".[test]", "pyOpenSSL==23.3.0", "cryptography>=41.0.5,<42")
    _pytest(session, *session.posargs, files=("test_pyopenssl.py",))
