"""RFC 7512 ``pkcs11:`` URIs, parsed without any PKCS#11 library."""

from __future__ import annotations

import dataclasses
import re

# Path attributes (RFC 7512 section 2.3, with slot-* from RFC 7512's errata and
# p11-kit); query attributes. Vendor attributes ("x-...") are kept, unused.
_PATH = {
    "token", "manufacturer", "serial", "model", "library-manufacturer",
    "library-description", "library-version", "object", "type", "id",
    "slot-description", "slot-manufacturer", "slot-id",
}  # fmt: skip
_QUERY = {"pin-source", "pin-value", "module-name", "module-path"}
_TYPES = {"cert", "data", "private", "public", "secret-key"}
_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


@dataclasses.dataclass(frozen=True)
class Pkcs11Uri:
    """The attributes of a ``pkcs11:`` URI, percent-decoded; None when absent."""

    token: str | None = None
    manufacturer: str | None = None
    serial: str | None = None
    model: str | None = None
    object: str | None = None  # the object's CKA_LABEL
    type: str | None = None
    id: bytes | None = None  # the object's CKA_ID
    slot_id: int | None = None
    module_path: str | None = None
    module_name: str | None = None
    pin_source: str | None = None
    # Never shown: a URI's PIN must not reach a log through repr().
    pin_value: str | None = dataclasses.field(default=None, repr=False)
    other: dict[str, str] = dataclasses.field(default_factory=dict)


def _decode(value: str, name: str) -> bytes:
    raw = value.encode("utf-8")
    if _ESCAPE.search(raw):
        raise ValueError(f"pkcs11: URI attribute {name!r}: a '%' is not followed by two hex digits")
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == 0x25:  # '%'
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


def _text(value: bytes, name: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"pkcs11: URI attribute {name!r} is not UTF-8") from None


def parse_uri(uri: str) -> Pkcs11Uri:
    """Parse ``pkcs11:path;attrs?query&attrs``; ``ValueError`` for anything malformed.

    An unknown path attribute is refused (a URI meant to narrow the match must
    not silently match more); unknown query attributes are kept in ``other``.
    """
    if not isinstance(uri, str):
        raise TypeError(f"a pkcs11: URI is a str, not {type(uri).__name__}")
    scheme, colon, rest = uri.partition(":")
    if not colon or scheme.lower() != "pkcs11":
        raise ValueError("not a pkcs11: URI (RFC 7512): it must start with 'pkcs11:'")
    path, _, query = rest.partition("?")
    if "#" in rest:
        raise ValueError("a pkcs11: URI has no fragment ('#' must be written %23)")
    found: dict[str, bytes] = {}
    other: dict[str, str] = {}
    for part, sep, known in ((path, ";", _PATH), (query, "&", _QUERY)):
        for item in part.split(sep) if part else ():
            name, eq, value = item.partition("=")
            if not eq or not name:
                raise ValueError(f"pkcs11: URI attribute {item!r} is not name=value")
            if name in found or name in other:
                raise ValueError(f"pkcs11: URI attribute {name!r} is given twice")
            if name in known:
                found[name] = _decode(value, name)
            elif name.startswith("x-") or known is _QUERY:
                other[name] = _text(_decode(value, name), name)
            else:
                raise ValueError(f"pkcs11: URI has an unknown path attribute {name!r}")
    fields: dict[str, object] = {
        name.replace("-", "_"): _text(value, name)
        for name, value in found.items()
        if name in ("token", "manufacturer", "serial", "model", "object", "type") or name in _QUERY
    }
    for name in found.keys() - {"id", "slot-id"}:
        if name.replace("-", "_") not in fields:  # library-*, slot-description...: kept
            other[name] = _text(found[name], name)
    if "id" in found:
        fields["id"] = found["id"]
    if "slot-id" in found:
        text = _text(found["slot-id"], "slot-id")
        if not text.isdigit():
            raise ValueError(f"pkcs11: URI attribute 'slot-id' is not a number: {text!r}")
        fields["slot_id"] = int(text)
    if fields.get("type") not in (None, *_TYPES):
        raise ValueError(f"pkcs11: URI attribute 'type' is not one of {sorted(_TYPES)}")
    if "pin_value" in fields and "pin_source" in fields:
        raise ValueError("a pkcs11: URI gives both pin-value and pin-source")
    return Pkcs11Uri(**fields, other=other)  # type: ignore[arg-type]
