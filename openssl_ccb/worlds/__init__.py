"""One adapter per kind of context; each says how to prove a context is ours
to touch, how to find its ``SSL_CTX *`` and its connections, and how a
stashed exception surfaces from the connection's own calls.

* ``raw``: an ``SSL_CTX *`` of ``ccb.ffi``, and the driver (``ccb.do_handshake``).
* ``stdlib``: ``ssl.SSLContext`` (``stdlib_sockets``: its connections' classes).
* ``pyopenssl``: pyOpenSSL's ``Context`` on the system libssl;
  ``pyopenssl_bundled``: on the OpenSSL of pip's wheels.

``openssl_ccb.api`` picks the world for a context.
"""
