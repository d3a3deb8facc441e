"""A Wallet chosen in C, without the GIL (src/openssl_ccb_choice.c).

When the callable set on a context is exactly a ``ccb.Wallet``, the context
also points to the Wallet's *slot*, which holds a copy of its credentials as
C judges them (the rules of ``selection.fit``). The trampoline asks C first:
a handshake whose answer C finds never enters Python. C asks Python (which
then runs ``Wallet.choose`` over the whole list) when it reaches a credential
it cannot judge, a signer's (which must enter Python to sign anyway), when
``selection.now`` was replaced, or when OpenSSL refuses the answer (Python
reports why). A change to ``wallet.credentials`` makes a new copy, which
every context the Wallet is set on sees at once.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

from .._binding import ffi, lib
from ..credential import Credential
from ..errors import error_from_queue


def slot_of(wallet: Any) -> Any:
    """The Wallet's slot, made (and filled) the first time it is set on a context."""
    slot = wallet.__dict__.get("_slot")
    if slot is None:
        made = lib.openssl_ccb_slot_new()
        if made == ffi.NULL:
            raise MemoryError("out of memory making a Wallet's slot")
        slot = wallet.__dict__["_slot"] = ffi.gc(made, lib.openssl_ccb_slot_free)
        refresh(wallet)
    return slot


def refresh(wallet: Any) -> None:
    """Copy the Wallet's credentials, as they are now, into its slot (if it has one)."""
    slot = wallet.__dict__.get("_slot")
    if slot is None:
        return
    items = list(wallet.credentials)
    choice = lib.openssl_ccb_choice_new(len(items))
    # NULL (out of memory): the slot then holds none and Python chooses.
    for i, item in enumerate(items if choice != ffi.NULL else ()):
        if type(item) is not Credential or item._signer is not None:
            continue  # Python judges it (and explains what is wrong with it)
        try:
            facts = item._get_facts()
        except Exception:
            continue
        lib.openssl_ccb_choice_set(
            choice,
            i,
            item._x509,
            item._key,
            item._chain_arg,
            int(facts.not_before.timestamp()),
            int(facts.not_after.timestamp()),
            facts.client_auth,
        )
    lib.openssl_ccb_slot_put(slot, choice)


def set_slot(pointer: Any, slot: Any) -> None:
    """The ``SSL_CTX *`` chooses with ``slot`` from now on (``ffi.NULL``: in Python)."""
    if lib.openssl_ccb_set_slot(pointer, slot) != 1:
        raise error_from_queue("could not attach a Wallet to the SSL_CTX")


def clock_replaced(ours: bool) -> None:
    """``selection.now`` was set: C judges validity only by the real clock."""
    lib.openssl_ccb_set_clock_ours(1 if ours else 0)


class Credentials(list):  # type: ignore[type-arg]
    """A Wallet's list: each change is copied to the Wallet's slot."""

    def __init__(self, wallet: Any, items: Iterable[Any]) -> None:
        super().__init__(items)
        self._wallet = weakref.ref(wallet)

    def _changed(self) -> None:
        wallet = self._wallet()
        if wallet is not None:
            refresh(wallet)


def _copied(name: str) -> Any:
    method = getattr(list, name)

    def changing(self: Credentials, *args: Any, **kwargs: Any) -> Any:
        result = method(self, *args, **kwargs)
        self._changed()
        return result

    changing.__name__ = name
    return changing


for _name in (
    "append", "extend", "insert", "remove", "pop", "clear", "sort", "reverse",
    "__setitem__", "__delitem__", "__iadd__", "__imul__",
):  # fmt: skip
    setattr(Credentials, _name, _copied(_name))
