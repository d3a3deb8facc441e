"""The per-handshake fast path: a callback's (cert, key[, chain]) parsed once."""

from __future__ import annotations

import atexit
import gc
import hashlib
import sys
import threading
from collections import OrderedDict
from typing import Any

from ._binding import ffi
from ._parse import _encoded
from .credential import Credential, check_chain_type

# --- the per-handshake fast path ---------------------------------------------
#
# A callback's (cert, key[, chain]) is parsed once. Data is known by its
# SHA-256, taken from a copy made now: bytes, bytearray, memoryview, PEM text,
# a file's contents. So a buffer rewritten in place, or a file rewritten with
# its size and times kept, is new data; and no data is kept, only digests.
# cryptography's objects (immutable) and pyOpenSSL's (whose mutators current
# pyOpenSSL deprecates; hashing their contents costs ~130 us, converting the key)
# are known by id(): each is pinned in _pinned while an entry names it, so
# its id cannot be reused meanwhile, and let go once nobody else holds it
# (after any garbage collection, or at the next miss): a caller's key object
# dies with the caller's last reference, and the Credential parsed from it
# with it. At most _CACHE_SIZE Credentials; cdata is never cached.

_BY_ID = ("cryptography.", "OpenSSL.")
_CACHE_SIZE = 64
_cache_lock = threading.Lock()
_cache: OrderedDict[tuple[tuple[str, Any], ...], Credential] = OrderedDict()
_pinned: dict[int, Any] = {}

# The same two objects returned again, no chain: found by their two ids alone,
# without a lock. An entry exists only while both objects are pinned, so no
# other live object can have those ids: a hit is the very pair, no check needed.
by_objects: dict[tuple[int, int], tuple[int, int, Credential]] = {}


def _part(obj: Any, what: str) -> tuple[tuple[str, Any], Any]:
    """How the cache knows one item, and what to parse it from."""
    if type(obj).__module__.startswith(_BY_ID):
        return ("id", id(obj)), obj
    data = _encoded(obj, what)  # a copy of the data as it is now
    if data is None:
        return ("id", id(obj)), obj  # unusable: load() explains, nothing is kept
    return ("data", hashlib.sha256(data).digest()), data


def coerce(cert: Any, key: Any, chain: Any = ()) -> Credential:
    """The Credential for a callback's ``(cert, key[, chain])``, parsed once.

    The same objects, or the same data (bytes or a file's contents), returned
    again reuse the Credential built the first time.
    """
    if not chain:
        pinned = by_objects.get((id(cert), id(key)))
        if pinned is not None:
            return pinned[2]
    check_chain_type(chain)  # before iterating it: a str's characters are no chain
    if any(isinstance(item, ffi.CData) for item in (cert, key, *chain)):
        return Credential.load(cert, key, chain)  # borrowed pointers: no cache
    parts = [
        _part(cert, "certificate"),
        _part(key, "private key"),
        *(_part(item, f"chain item {i}") for i, item in enumerate(chain)),
    ]
    ident = tuple(part[0] for part in parts)
    with _cache_lock:
        hit = _cache.get(ident)
        if hit is not None:
            _cache.move_to_end(ident)
            return hit
    credential = Credential.load(parts[0][1], parts[1][1], [part[1] for part in parts[2:]])
    with _cache_lock:
        dropped = _sweep()  # objects freed only once the lock is released
        for (kind, _), obj in parts:
            if kind == "id":
                _pinned[id(obj)] = obj
        _cache[ident] = credential
        if len(ident) == 2 and ident[0][0] == ident[1][0] == "id":
            by_objects[(id(cert), id(key))] = (id(cert), id(key), credential)
        while len(_cache) > _CACHE_SIZE:
            dropped += _forget(next(iter(_cache)))
    del dropped
    return credential


def _forget(ident: tuple[tuple[str, Any], ...]) -> list[Any]:
    """Drop an entry (lock held); return the objects no entry names any more."""
    del _cache[ident]
    ids = [value for kind, value in ident if kind == "id"]
    if len(ident) == len(ids) == 2:
        by_objects.pop((ids[0], ids[1]), None)  # before unpinning: see by_objects
    named = {value for other in _cache for kind, value in other if kind == "id"}
    return [_pinned.pop(i) for i in set(ids) - named]


def _refcounts(pins: dict[int, Any]) -> list[tuple[int, int]]:
    # PyPy counts no references: there an entry leaves by _CACHE_SIZE alone,
    # so at most that many returned objects are kept alive.
    getrefcount = getattr(sys, "getrefcount", None)
    if getrefcount is None:
        return []
    return [(i, getrefcount(obj)) for i, obj in pins.items()]


# What an object held by _pinned alone counts, measured the way _sweep measures.
_ALONE = next(iter(_refcounts({0: object()})), (0, 0))[1]


def _sweep() -> list[Any]:
    """Forget (lock held) every entry naming an object that only _pinned holds."""
    alone = {i for i, count in _refcounts(_pinned) if count <= _ALONE}
    dropped: list[Any] = []
    if alone:
        for ident in [x for x in _cache if any(k == "id" and v in alone for k, v in x)]:
            dropped += _forget(ident)
    return dropped


def _after_gc(phase: str, info: dict[str, int]) -> None:
    # Never waits: the lock may be held by this very thread (a collection
    # can start inside coerce()); then the next collection or miss sweeps.
    if phase == "stop" and _pinned and _cache_lock.acquire(blocking=False):
        try:
            dropped = _sweep()
        finally:
            _cache_lock.release()
        del dropped


if hasattr(sys, "getrefcount"):  # nothing to sweep by on PyPy: see _refcounts
    gc.callbacks.append(_after_gc)
    atexit.register(gc.callbacks.remove, _after_gc)  # before module globals go
