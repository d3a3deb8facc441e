from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import trustme

import openssl_ccb as ccb
from openssl_ccb import lib

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA(organization_name="openssl-ccb tests")


@pytest.fixture(scope="session")
def other_ca() -> trustme.CA:
    return trustme.CA(organization_name="another CA")


@pytest.fixture(scope="session")
def server_cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost", "127.0.0.1")


@pytest.fixture(scope="session")
def client_cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("client@example.org", common_name="client one")


@pytest.fixture(scope="session")
def credential(client_cert: trustme.LeafCert) -> ccb.Credential:
    return ccb.Credential.load(
        client_cert.cert_chain_pems[0].bytes(), client_cert.private_key_pem.bytes()
    )


@pytest.fixture(scope="session")
def client_der(client_cert: trustme.LeafCert) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_pem_x509_certificate(client_cert.cert_chain_pems[0].bytes()).public_bytes(
        Encoding.DER
    )


@pytest.fixture(autouse=True)
def clean_error_queue() -> Any:
    """Every test starts and must end with an empty OpenSSL error queue."""
    lib.ERR_clear_error()
    yield
    leftover = ccb.errors.drain_error_queue()
    assert leftover == [], f"OpenSSL error queue left dirty: {leftover}"


@pytest.fixture(params=["TLSv1.2", "TLSv1.3"])
def version(request: pytest.FixtureRequest) -> str:
    return str(request.param)
