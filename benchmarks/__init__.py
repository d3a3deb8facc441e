"""openssl-ccb benchmarks: what the client-certificate callback costs, side by side.

``python -m benchmarks`` (``make bench``) prints a table; ``--json`` the same
figures as JSON; ``--quick`` runs in under a minute (figures, not verdicts).
Sections: handshakes (callback against a static certificate), dispatch (one
call through the pointer), memory (growth over many handshakes and
contexts), threads (two threads on one shared context), signer
(``Credential.from_signer`` against the same key loaded).
"""
