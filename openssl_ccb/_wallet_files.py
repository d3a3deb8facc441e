"""Reading a directory of certificates and keys into credentials, forgivingly.

Every usable credential is kept; each file that gives none is reported with
the reason, and the caller (``Wallet.from_directory``) decides what to say.
Keys are paired with certificates by their public key, not only by name, so
certbot's ``cert.pem``/``fullchain.pem`` beside ``privkey.pem`` pair too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Callable, Union

from ._binding import lib
from ._parse import Password, load_certificates, load_private_key
from .credential import Credential, _i2d_x509
from .errors import Error, drain_error_queue

# A password for every file, one per file name, or one asked for by path.
Passwords = Union[Password, Mapping[str, Password], Callable[[str], Password]]

_PKCS12 = (".p12", ".pfx")
_CERTIFICATES = (".pem", ".crt", ".cer", ".der")
_KEYS = (".key",)


def _password_for(password: Passwords, file: str) -> Password:
    if callable(password):
        return password(file)
    if isinstance(password, Mapping):
        return password.get(os.path.basename(file))
    return password


def _matches(x509: Any, key: Any) -> bool:
    if lib.X509_check_private_key(x509, key) == 1:
        return True
    drain_error_queue()
    return False


def read_directory(
    root: str, names: list[str], password: Passwords
) -> tuple[list[Credential], list[tuple[str, str]]]:
    """The credentials of the files ``names`` in ``root``, and (path, reason) skipped."""
    skipped: list[tuple[str, str]] = []
    # In name order: a Credential, or (certificates, key or None) to pair.
    found: list[tuple[str, Any]] = []
    keys: dict[str, Any] = {}  # path -> EVP_PKEY *, in name order
    for name in names:
        file = os.path.join(root, name)
        ext = os.path.splitext(name)[1].lower()
        if ext not in _PKCS12 + _CERTIFICATES + _KEYS:
            continue
        try:
            if ext in _PKCS12:
                found.append((file, Credential.from_pkcs12(file, _password_for(password, file))))
                continue
            with open(file, "rb") as f:
                data = f.read()
            has_key = ext in _KEYS or b"PRIVATE KEY-----" in data
            key = load_private_key(data, _password_for(password, file)) if has_key else None
            if ext in _KEYS or (b"-----BEGIN" in data and b"CERTIFICATE-----" not in data):
                if key is None:
                    raise Error("it holds no certificate and no private key")
                keys[file] = key
            else:
                found.append((file, (load_certificates(data), key)))
        except OSError as exc:
            skipped.append((file, f"cannot read it: {exc.strerror}"))
        except (Error, TypeError, ValueError) as exc:
            skipped.append((file, str(exc)))
    credentials: list[Credential] = []
    used: set[str] = set()
    for file, item in found:
        try:
            if not isinstance(item, Credential):
                item = _pair(file, item[0], item[1], keys, used)
            if item is not None:
                _add(credentials, item)
        except (Error, TypeError, ValueError) as exc:
            skipped.append((file, str(exc)))
    sent = {der for c in credentials for der in (c.certificate, *c.chain)}
    for file, item in found:
        if isinstance(item, tuple) and item[1] is None and file not in used:
            certs = item[0]
            if any(_i2d_x509(x) not in sent for x in certs):
                skipped.append((file, _no_key(file, keys)))
    for file in keys:
        if file not in used:
            skipped.append((file, "no certificate in the directory matches this private key"))
    skipped.sort()
    return credentials, skipped


def _pair(
    file: str, certs: list[Any], key: Any, keys: dict[str, Any], used: set[str]
) -> Credential | None:
    """The credential of a certificate file, with its own key or a matching one."""
    if key is not None:
        return Credential(certs[0], key, certs[1:])
    beside = os.path.splitext(file)[0] + ".key"
    for path in sorted(keys, key=lambda p: p != beside):  # NAME.key first
        if _matches(certs[0], keys[path]):
            used.update((file, path))
            return Credential(certs[0], keys[path], certs[1:])
    return None  # only certificates: judged once every credential is known


def _no_key(file: str, keys: dict[str, Any]) -> str:
    beside = os.path.splitext(file)[0] + ".key"
    why = "no private key in it, and no private key in the directory matches it"
    if beside in keys:
        why += f" ({os.path.basename(beside)} beside it does not match)"
    return why


def _add(credentials: list[Credential], new: Credential) -> None:
    """Keep one credential per leaf: the one with the longest chain, where the first was."""
    for i, old in enumerate(credentials):
        if old.certificate == new.certificate:
            if len(new._chain) > len(old._chain):
                credentials[i] = new
            return
    credentials.append(new)


def load_pem_file(file: str, keys: set[str], stem: str, password: Password) -> Credential:
    """A PEM holding a key and its certificates, or certificates beside ``stem.key``."""
    with open(file, "rb") as f:
        data = f.read()
    certs = load_certificates(data)
    if b"PRIVATE KEY-----" in data:
        key: Any = data
    elif f"{stem}.key" in keys:
        key = os.path.join(os.path.dirname(file), f"{stem}.key")
    else:
        raise Error(f"no private key in it, and no {stem}.key beside it")
    return Credential(certs[0], load_private_key(key, password), certs[1:])
