"""The few certificate fields a choice needs, read from the certificate's DER.

The binding exposes no ``ASN1_TIME`` or extension API, and these two fields
(validity, extended key usage) sit at fixed places of RFC 5280's structure.
The DER is OpenSSL's own re-encoding (``i2d_X509``), so it is well formed;
any surprise still raises ``ValueError`` rather than reading past the end.
"""

from __future__ import annotations

import datetime
from typing import NamedTuple

_UTC = datetime.timezone.utc
_EXTENDED_KEY_USAGE = bytes.fromhex("551d25")  # 2.5.29.37
CLIENT_AUTH = bytes.fromhex("2b06010505070302")  # 1.3.6.1.5.5.7.3.2
ANY_EXTENDED_KEY_USAGE = bytes.fromhex("551d2500")  # 2.5.29.37.0


class Facts(NamedTuple):
    not_before: datetime.datetime
    not_after: datetime.datetime
    # None when the certificate has no extended key usage (any use allowed).
    extended_key_usage: frozenset[bytes] | None

    @property
    def client_auth(self) -> bool:
        """Whether the extended key usage, if any, allows TLS client authentication."""
        usage = self.extended_key_usage
        return usage is None or bool(usage & {CLIENT_AUTH, ANY_EXTENDED_KEY_USAGE})


def _element(der: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, start, end) of the contents of the element at ``pos``."""
    if pos + 2 > end:
        raise ValueError("truncated DER")
    tag, length = der[pos], der[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or pos + count > end:
            raise ValueError("bad DER length")
        length = 0
        for k in range(pos, pos + count):  # byte by byte: see _time
            length = length << 8 | der[k]
        pos += count
    if pos + length > end:
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _children(der: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    items = []
    while start < end:
        item = _element(der, start, end)
        items.append(item)
        start = item[2]
    return items


def _time(der: bytes, tag: int, start: int, end: int) -> datetime.datetime:
    """A validity time, its digits read byte by byte: no strptime and no
    int.from_bytes, which valgrind misreports on some CPython builds (this
    runs inside handshakes, under make memcheck)."""
    if tag == 0x17:  # UTCTime, YYMMDDHHMMSSZ: 50-99 are 19xx (RFC 5280 4.1.2.5.1)
        digits = _digits(der, start, start + 12)
        year = digits[0] * 10 + digits[1]
        year += 1900 if year >= 50 else 2000
        rest = digits[2:]
    elif tag == 0x18:  # GeneralizedTime, YYYYMMDDHHMMSSZ
        digits = _digits(der, start, start + 14)
        year = digits[0] * 1000 + digits[1] * 100 + digits[2] * 10 + digits[3]
        rest = digits[4:]
    else:
        raise ValueError("a validity time is neither UTCTime nor GeneralizedTime")
    if end != start + len(digits) + 1 or der[end - 1] != 0x5A:  # ends in "Z"
        raise ValueError("a validity time not in UTC (RFC 5280 4.1.2.5)")
    month, day, hour, minute, second = (rest[k] * 10 + rest[k + 1] for k in range(0, 10, 2))
    return datetime.datetime(year, month, day, hour, minute, second, tzinfo=_UTC)


def _digits(der: bytes, start: int, end: int) -> list[int]:
    if end > len(der):
        raise ValueError("truncated DER")
    digits = [der[k] - 0x30 for k in range(start, end)]
    if any(not 0 <= d <= 9 for d in digits):
        raise ValueError("a validity time with a non-digit")
    return digits


def facts(der: bytes) -> Facts:
    """Validity and extended key usage of a DER certificate."""
    _, start, end = _element(der, 0, len(der))
    _, start, end = _element(der, start, end)  # tbsCertificate
    fields = _children(der, start, end)
    if fields and fields[0][0] == 0xA0:  # [0] version
        fields = fields[1:]
    if len(fields) < 6:
        raise ValueError("a certificate without its validity")
    times = _children(der, fields[3][1], fields[3][2])  # serial, signature, issuer, validity
    if len(times) != 2:
        raise ValueError("a validity that is not two times")
    usage: frozenset[bytes] | None = None
    for tag, start, end in fields[6:]:
        if tag != 0xA3:  # [3] extensions
            continue
        (_, start, end), *_ = _children(der, start, end)
        for _, ext_start, ext_end in _children(der, start, end):
            parts = _children(der, ext_start, ext_end)  # id, [critical], value
            if der[parts[0][1] : parts[0][2]] != _EXTENDED_KEY_USAGE:
                continue
            _, value_start, value_end = _element(der, parts[-1][1], parts[-1][2])
            oids = _children(der, value_start, value_end)
            usage = frozenset(der[s:e] for _, s, e in oids)
    return Facts(_time(der, *times[0]), _time(der, *times[1]), usage)
