"""Fuzzing, with hypothesis, in all three worlds.

1. Whatever the callback returns or raises, over one or more attempts: the
   process survives; the handshake sends exactly the certificate returned,
   or none for None/0, or stays suspended, or fails with the callback's own
   exception (or a TypeError/ValueError/ccb.Error for an unusable return);
   and the error queue is empty afterwards.
2. A server advertising any CA list (0 to 100 names, unusual attribute and
   string types, non-ASCII) is reported exactly in ``acceptable_cas``.
"""

from __future__ import annotations

import collections
import datetime
import enum
import ssl
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from certs import issue
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID, ObjectIdentifier
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tlsutil import server_context, their_queue_is_empty
from worlds import WORLDS, Link, MemoryClient, MemoryServer, client_context, suspension

import openssl_ccb as ccb
from openssl_ccb import lib

FUZZ = settings(
    max_examples=100,
    deadline=None,
    database=None,  # nothing written into the work tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# --- 1. arbitrary returns and exceptions --------------------------------------------------


class Fatal(BaseException):
    """Not an Exception: it must get through all the same."""


class Minus(enum.IntEnum):
    ONE = -1  # an int subclass is not an int answer: refused


Pair = collections.namedtuple("Pair", "cert key")

SEND_FORMS = [
    "credential",
    "pem",
    "der",
    "cryptography",
    "pyopenssl",
    "paths",
    "pathlib",
    "cdata",
    "empty chain",
    "with chain",
    "namedtuple",
]
MIXED = ["wrong key", "junk key", "junk chain item", "chain not linking", "NULL cdata"]
EXCEPTIONS = [ValueError, KeyError, RuntimeError, OSError, TypeError, MemoryError]
EXCEPTIONS += [ssl.SSLError, ccb.Error, StopIteration, RecursionError, GeneratorExit, Fatal]

junk = st.recursive(
    st.one_of(
        st.integers(min_value=1),
        st.booleans(),
        st.floats(),
        st.text(max_size=20),
        st.binary(max_size=64),
        st.just(Minus.ONE),
        st.just(object()),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=5).map(tuple),
        st.dictionaries(st.text(max_size=5), inner, max_size=3),
    ),
    max_leaves=8,
)

answers = st.one_of(
    st.tuples(st.just("send"), st.sampled_from(SEND_FORMS)),
    st.tuples(st.just("none"), st.sampled_from([None, 0])),
    st.tuples(st.just("suspend"), st.integers(max_value=-1)),
    st.tuples(st.just("suspend"), st.sampled_from(["raise", "raise stdlib"])),
    st.tuples(st.just("raise"), st.sampled_from(EXCEPTIONS)),
    st.tuples(st.just("mixed"), st.sampled_from(MIXED)),
    st.tuples(st.just("junk"), junk),
)


class Forms(dict):  # type: ignore[type-arg]
    """Named returns; its repr stays short (hypothesis prints test arguments)."""

    def __repr__(self) -> str:
        return "<forms>"


@pytest.fixture(scope="module")
def forms(ca: Any, client_cert: Any, tmp_path_factory: pytest.TempPathFactory) -> Forms:
    """Every way to return the same client certificate, plus near misses."""
    from OpenSSL import crypto

    cert_pem = client_cert.cert_chain_pems[0].bytes()
    key_pem = client_cert.private_key_pem.bytes()
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, None)
    der = cert.public_bytes(serialization.Encoding.DER)
    key_der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "c.pem").write_bytes(cert_pem)
    (folder / "k.pem").write_bytes(key_pem)
    credential = ccb.Credential.load(cert_pem, key_pem)
    intermediate = ca.create_child_ca()
    chained = intermediate.issue_cert("chained@example.org")
    chained_der = x509.load_pem_x509_certificate(chained.cert_chain_pems[0].bytes()).public_bytes(
        serialization.Encoding.DER
    )
    other_key = ec.generate_private_key(ec.SECP256R1())
    send = {
        "credential": credential,
        "pem": (cert_pem, key_pem),
        "der": (der, key_der),
        "cryptography": (cert, key),
        "pyopenssl": (crypto.X509.from_cryptography(cert), crypto.PKey.from_cryptography_key(key)),
        "paths": (str(folder / "c.pem"), str(folder / "k.pem")),
        "pathlib": (Path(folder / "c.pem"), Path(folder / "k.pem")),
        "cdata": (credential._x509, credential._key),
        "empty chain": (cert_pem, key_pem, []),
        "with chain": (
            chained.cert_chain_pems[0].bytes(),
            chained.private_key_pem.bytes(),
            [intermediate.cert_pem.bytes()],
        ),
        "namedtuple": Pair(cert_pem, key_pem),
    }
    mixed = {
        "wrong key": (cert_pem, other_key),
        "junk key": (cert_pem, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
        "junk chain item": (cert_pem, key_pem, [b"not a certificate"]),
        "chain not linking": (cert_pem, key_pem, [issue("Unrelated CA", ca=True).pem]),
        "NULL cdata": (ccb.ffi.NULL, credential._key),
    }
    return Forms(
        send=send,
        mixed=mixed,
        der={name: (chained_der if name == "with chain" else der) for name in send},
    )


def materialize(answer: tuple[str, Any], forms: dict[str, Any]) -> tuple[str, Any]:
    """(what the callback does, with what) and what must follow."""
    kind, what = answer
    if kind == "send":
        return "return", forms["send"][what]
    if kind in ("none", "junk"):
        return "return", what
    if kind == "mixed":
        return "return", forms["mixed"][what]
    if kind == "suspend":
        if what == "raise":
            return "raise", ccb.WantX509Lookup()
        if what == "raise stdlib":
            return "raise", ccb.SSLWantX509Lookup()
        return "return", what
    return "raise", what("raised by the fuzzed callback")


def handshake(world: str, ctx: Any, server: ssl.SSLContext, budget: int) -> tuple[str, Any]:
    """Run one handshake: ("done", what the server received), ("raised", exc)
    or ("suspended", None) once it has suspended ``budget`` times."""
    link = Link(MemoryClient(world, ctx), MemoryServer(server))
    suspended = 0
    for _ in range(100):
        try:
            client_done = link.client.handshake_step()
        except suspension(world):
            suspended += 1
            if suspended > budget:
                return "suspended", None
            client_done = False
        except BaseException as exc:
            return "raised", exc
        server_done = link.server.handshake_step()
        link.move()
        if client_done and server_done:
            link.exchange()
            return "done", link.server.peer_der()
    raise AssertionError("the handshake neither finished nor failed")


@pytest.fixture(scope="module")
def optional_server(ca: Any, server_cert: Any) -> ssl.SSLContext:
    """Accepts no certificate as well as a good one: any failure is the client's."""
    return server_context(ca, server_cert, verify=ssl.CERT_OPTIONAL)


@pytest.mark.parametrize("world", WORLDS)
@FUZZ
@given(plan=st.lists(answers, min_size=1, max_size=4))
def test_any_return_or_exception_sends_exactly_it_or_fails_cleanly(
    world, plan, forms, ca, optional_server
):
    actions = [materialize(answer, forms) for answer in plan]

    def callback(request: ccb.CertificateRequest) -> Any:
        action, value = actions[min(request.attempt, len(actions)) - 1]
        if action == "raise":
            raise value
        return value

    ctx = client_context(world, ca)
    ccb.set_client_cert_cb(ctx, callback)
    outcome, detail = handshake(world, ctx, optional_server, budget=len(plan) + 1)

    decisive = next((i for i, (kind, _) in enumerate(plan) if kind != "suspend"), None)
    if decisive is None:
        assert outcome == "suspended"
    else:
        kind, what = plan[decisive]
        refused = world == "pyopenssl" and ccb.pyopenssl_route() == "bundled"
        if kind == "send" and what == "with chain" and refused:
            assert outcome == "raised"  # chains are refused on pyOpenSSL's bundled route
            assert "no per-connection chain" in str(detail), repr(detail)
        elif kind == "send":
            assert (outcome, detail) == ("done", forms["der"][what])
        elif kind == "none":
            assert (outcome, detail) == ("done", None)
        elif kind == "raise":
            assert outcome == "raised"
            assert detail is actions[decisive][1]  # the callback's own exception
        else:  # an unusable return
            assert outcome == "raised"
            assert isinstance(detail, (TypeError, ValueError, ccb.Error)), repr(detail)
    assert lib.ERR_peek_error() == 0
    assert their_queue_is_empty(world)


# --- 2. arbitrary CA lists -----------------------------------------------------------------

_SIGNER = ec.generate_private_key(ec.SECP256R1())

KNOWN = [NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME]
KNOWN += [NameOID.LOCALITY_NAME, NameOID.STATE_OR_PROVINCE_NAME]
UNUSUAL = [NameOID.TITLE, NameOID.SERIAL_NUMBER, NameOID.PSEUDONYM, NameOID.EMAIL_ADDRESS]
UNUSUAL += [NameOID.DOMAIN_COMPONENT, NameOID.USER_ID, NameOID.GIVEN_NAME]


def chars(low: int, high: int, *refused: str) -> Any:
    """Characters in [low, high] outside the Unicode categories refused (and never
    surrogates, which no string type can carry)."""
    return st.characters(min_codepoint=low, max_codepoint=high).filter(
        lambda c: unicodedata.category(c) not in ("Cs", *refused)
    )


letters = chars(0x20, 0x2FFFF).filter(str.isalnum)
printable = st.sampled_from(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?"
)
ascii_ = chars(0x20, 0x7E)

VALUES = {  # the string types OpenSSL accepts in a name, with what each can hold
    _ASN1Type.UTF8String: st.text(chars(0, 0x10FFFF, "Cc"), min_size=1, max_size=16),
    _ASN1Type.BMPString: st.text(chars(0x20, 0xFFFF), min_size=1, max_size=16),
    _ASN1Type.UniversalString: st.text(chars(0, 0x10FFFF), min_size=1, max_size=16),
    _ASN1Type.PrintableString: st.text(printable, min_size=1, max_size=16),
    _ASN1Type.IA5String: st.text(ascii_, min_size=1, max_size=16),
    _ASN1Type.T61String: st.text(ascii_, min_size=1, max_size=16),
    _ASN1Type.NumericString: st.text(st.sampled_from("0123456789 "), min_size=1, max_size=16),
}

oids = st.one_of(
    st.sampled_from(KNOWN + UNUSUAL),
    st.tuples(st.integers(1, 2**20), st.integers(0, 2**20)).map(
        lambda pair: ObjectIdentifier(f"1.3.6.1.4.1.{pair[0]}.{pair[1]}")
    ),
)


@st.composite
def attributes(draw: Any) -> x509.NameAttribute:
    oid = draw(oids)
    kind = draw(st.sampled_from(list(VALUES)))
    value = draw(VALUES[kind])
    return x509.NameAttribute(oid, value, kind)


@st.composite
def plain_attributes(draw: Any) -> x509.NameAttribute:
    """Attributes RFC 4514 and OpenSSL spell alike: known types, letters and digits."""
    oid = draw(st.sampled_from(KNOWN))
    head = draw(letters)
    body = draw(st.text(st.one_of(letters, st.just(" ")), max_size=12))
    return x509.NameAttribute(oid, (head + body).rstrip())


def names(attribute: Any) -> Any:
    rdns = st.lists(attribute, min_size=1, max_size=2, unique_by=lambda a: (a.oid, a.value)).map(
        x509.RelativeDistinguishedName
    )
    return st.lists(rdns, max_size=3).map(x509.Name)  # 100 names stay under 64 KiB


ca_lists = st.lists(st.one_of(names(attributes()), names(plain_attributes())), max_size=100)


def as_certificate(name: x509.Name) -> bytes:
    """A throwaway self-signed certificate with this subject: the server's way to
    put a name in its list."""
    when = datetime.datetime(2020, 1, 1)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_SIGNER.public_key())
        .serial_number(1)
        .not_valid_before(when)
        .not_valid_after(when + datetime.timedelta(days=1))
        .sign(_SIGNER, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


@pytest.mark.parametrize("world", WORLDS)
@FUZZ
@given(listed=ca_lists, version=st.sampled_from(["TLSv1.2", "TLSv1.3"]))
def test_any_ca_list_is_reported_exactly(world, listed, version, ca, server_cert):
    ders = [as_certificate(name) for name in listed]
    server = server_context(ca, server_cert, version=version, verify=ssl.CERT_OPTIONAL)
    for der in ders:
        x509_ = ccb.credential.load_certificate(der)
        assert lib.SSL_CTX_add_client_CA(ccb.ssl_ctx(server), x509_) == 1
    seen: list[tuple[list[bytes], list[str]]] = []
    ctx = client_context(world, ca)
    ccb.set_client_cert_cb(
        ctx, lambda request: seen.append((request.acceptable_cas, request.acceptable_ca_names))
    )
    assert handshake(world, ctx, server, budget=0) == ("done", None)
    sent = [x509.load_der_x509_certificate(der).subject for der in ders]
    ((cas, strings),) = seen
    assert cas == [name.public_bytes() for name in sent]
    assert len(strings) == len(sent)
    for string, name in zip(strings, sent):
        if _plain(name):  # elsewhere RFC 4514 allows several spellings
            assert string == name.rfc4514_string()
    assert lib.ERR_peek_error() == 0
    assert their_queue_is_empty(world)


def _plain(name: x509.Name) -> bool:
    """Single-valued RDNs of known types holding letters, digits and inner spaces."""
    return all(len(rdn) == 1 for rdn in name.rdns) and all(
        attribute.oid in KNOWN
        and str(attribute.value) == str(attribute.value).strip()
        and str(attribute.value).replace(" ", "").isalnum()
        for attribute in name
    )
