"""The core: what every kind of context shares.

* ``state``: what is kept for one ``SSL_CTX`` and for how long (the lifetime rule).
* ``dispatch``: the return-code table, a callable's answer translated for each
  kind of OpenSSL callback.
* ``trampoline``: the one static C ``client_cert_cb`` and its Python half;
  setting and reading a callback on an ``SSL_CTX *`` of our libssl.
* ``channel``: how a callback's (or a signer's) exception reaches the code
  that drove the handshake.
* ``signer``: the Python half of the signer provider (``Credential.from_signer``).
* ``choice``: a ``Wallet`` decided in C without the GIL: its slot and the
  copy of its credentials there.

The core imports no world (``openssl_ccb.worlds``): a world tells the core how
to find its connections by setting ``ContextState.finder``.
"""
