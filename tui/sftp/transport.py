"""How every SSH connection is set up for speed: cipher order, channel window, packet size.

A module of its own, importing nothing but asyncssh, so that the benchmark's bare client
(``benchmarks/bare_client.py``) sets up the very same transport as ``sync`` without loading
the rest of the application.
"""

from __future__ import annotations

from asyncssh.encryption import get_default_encryption_algs

#: Preferred ciphers first (AES-GCM: one call into OpenSSL per packet, and AES-NI where the
#: CPU has it); the rest of asyncssh's defaults follow.
PREFERRED_CIPHERS = (b"aes128-gcm@openssh.com", b"aes256-gcm@openssh.com")
#: SSH channel window and packet size: large values cut per-packet overhead on fast links.
WINDOW = 8 * 1024 * 1024
MAX_PKTSIZE = 256 * 1024


def cipher_list() -> list[str]:
    """asyncssh's ciphers, the preferred ones first."""
    defaults = get_default_encryption_algs()
    ordered = [c for c in PREFERRED_CIPHERS if c in defaults] + [c for c in defaults if c not in PREFERRED_CIPHERS]
    return [c.decode("ascii") for c in ordered]
