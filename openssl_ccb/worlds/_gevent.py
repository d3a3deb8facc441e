"""gevent's SSLSocket, seen through its raw socket.

gevent's ``SSLSocket`` (``gevent.ssl``; ``gevent._ssl3`` before gevent 23)
passes ``_wrap_socket`` its inner ``_contextawaresock`` as the owner, not
itself: that raw socket holds a weak reference to the SSLSocket that drives
the handshake, the object that must receive a callback's exception.
Nothing here imports gevent: a program that never loaded it pays one
dictionary look-up per connection.
"""

from __future__ import annotations

import sys
import weakref
from typing import Any

_MODULES = ("gevent.ssl", "gevent._ssl3")


def real_owner(owner: Any) -> Any:
    """The gevent SSLSocket behind ``owner`` if it is gevent's raw socket, else ``owner``."""
    for name in _MODULES:
        module = sys.modules.get(name)
        # The exact class, by type(): a lookalike's attributes are not trusted.
        if module is not None and type(owner) is getattr(module, "_contextawaresock", None):
            ref = owner._sslsock
            sslsocket = ref() if type(ref) is weakref.ref else None
            return owner if sslsocket is None else sslsocket
    return owner
