"""Locks that a fork() cannot leave held.

A child of fork() has only the thread that forked: a lock another thread held
at that moment would stay held in the child forever, and the child's first
set_client_cert_cb would hang. Each lock made here is replaced by a new,
free one in the child (``os.register_at_fork``). (The C state lock has its
own ``pthread_atfork`` handlers, in src/openssl_ccb.c.)
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any


class ForkSafeRLock:
    """A ``threading.RLock`` that a child process gets fresh."""

    __slots__ = ("__weakref__", "_lock")

    def __init__(self) -> None:
        self._lock = threading.RLock()
        _made.add(self)

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._lock.__exit__(*exc)


_made: weakref.WeakSet[ForkSafeRLock] = weakref.WeakSet()


def _renew_in_child() -> None:
    for lock in list(_made):
        lock._lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_in_child)
