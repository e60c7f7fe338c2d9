"""How every SSH connection is set up for speed: cipher order, channel window, packet size,
and asyncssh's debug lines made only when they are logged.

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


def _ask_the_logger_first() -> None:
    """asyncssh writes the text of a debug line for every packet it sends or receives and for
    every SFTP request (the packet's name, its length in words, each argument made text)
    before its logger decides to drop the line, as it does unless debug logging is on: ~20
    lines per file downloaded, a few percent of a many-file sync's CPU. Its two logging
    methods are wrapped to ask the logger first; what is logged when it is on is unchanged."""
    import logging  # noqa: PLC0415 - only for this

    from asyncssh.logging import SSHLogger  # noqa: PLC0415
    from asyncssh.packet import SSHPacketLogger  # noqa: PLC0415

    log = SSHLogger.log
    log_packet = SSHPacketLogger._log_packet
    if getattr(log, "asks_first", False):
        return

    def asking_log(self: SSHLogger, level: int, msg: object, *args: object, **kwargs: object) -> None:
        if self.isEnabledFor(level):
            log(self, level, msg, *args, **kwargs)

    def asking_log_packet(self: SSHPacketLogger, msg: str, pkttype: int, pktid: int | None,
                          packet: object, note: str) -> None:
        # SSHLogger.packet logs only at debug level 3, and only where DEBUG is enabled
        logger = self.logger
        if logger._debug_level >= 3 and logger.isEnabledFor(logging.DEBUG):
            log_packet(self, msg, pkttype, pktid, packet, note)  # type: ignore[arg-type]

    asking_log.asks_first = True  # type: ignore[attr-defined]
    setattr(SSHLogger, "log", asking_log)  # noqa: B010 - a method replaced on purpose
    setattr(SSHPacketLogger, "_log_packet", asking_log_packet)  # noqa: B010


_ask_the_logger_first()
