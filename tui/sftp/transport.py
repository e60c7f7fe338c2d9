"""How every SSH connection is set up for speed: cipher order, channel window, packet size,
no needless SSH_MSG_IGNORE packet before each packet sent, no log message built that no
logger takes, and no keepalive timer armed again for every read from the socket.

A module of its own, importing nothing but asyncssh, so that the benchmark's bare client
(``benchmarks/bare_client.py``) sets up the very same transport as ``sync`` without loading
the rest of the application.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from asyncssh.connection import SSHConnection
from asyncssh.constants import MSG_IGNORE
from asyncssh.encryption import get_default_encryption_algs
from asyncssh.logging import SSHLogger
from asyncssh.packet import SSHPacket, SSHPacketLogger, String

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


#: The empty SSH_MSG_IGNORE asyncssh sends ahead of every packet once the transport is
#: encrypted.
_EMPTY_IGNORE = String(b"")


def _no_iv_to_hide(cipher: object) -> bool:
    """Whether a cipher's next packet cannot be predicted from the last one sent: counter
    mode and the AEAD modes (AES-GCM, chacha20-poly1305) - every cipher this client offers.
    CBC (never offered; an unknown name counts as CBC) chains its IV from the last block."""
    return isinstance(cipher, str) and (
        cipher.endswith("-ctr") or cipher in ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
                                              "chacha20-poly1305@openssh.com"))


def _skip_needless_ignore_packets() -> None:
    """asyncssh sends an empty SSH_MSG_IGNORE before every packet once the transport is
    encrypted (a countermeasure against the chosen-plaintext attack on CBC mode, RFC 4251
    9.3.1), whatever the cipher: every SFTP request went out as two packets, each encrypted,
    written to the socket with a system call of its own, and received, decrypted and dropped
    by the server. With the ciphers this client negotiates the countermeasure protects
    nothing (OpenSSH sends none), so the empty ignore packet is left out for them; with a
    CBC cipher it is still sent."""
    send_packet = SSHConnection.send_packet
    if getattr(send_packet, "_skips_ignore", False):
        return

    def without_needless_ignore(self: SSHConnection, pkttype: int, *args: bytes,
                                **kwargs: SSHPacketLogger | None) -> None:
        if pkttype == MSG_IGNORE and args == (_EMPTY_IGNORE,) and kwargs.get("handler") is None \
                and _no_iv_to_hide(self.get_extra_info("send_cipher")):
            return
        send_packet(self, pkttype, *args, **kwargs)

    without_needless_ignore._skips_ignore = True  # type: ignore[attr-defined]
    SSHConnection.send_packet = without_needless_ignore  # type: ignore[method-assign]


def _log_only_what_is_logged() -> None:
    """asyncssh builds the text of each of its log messages (its arguments made strings) and
    of each packet's debug line (the packet's name and size) before it asks whether anyone
    logs it: ~10 debug messages and ~20 packet lines per file downloaded, all dropped unless
    asyncssh's debug logging is on. Asked first, they cost a look-up each; when they are
    logged, they are logged exactly as before."""
    log = SSHLogger.log
    if getattr(log, "_asks_first", False):
        return

    def log_if_enabled(self: SSHLogger, level: int, msg: object, *args: object, **kwargs: object) -> None:
        if self.isEnabledFor(level):
            log(self, level, msg, *args, **kwargs)

    log_packet = SSHPacketLogger._log_packet

    def log_packet_if_enabled(self: SSHPacketLogger, msg: str, pkttype: int, pktid: int | None,
                              packet: bytes | SSHPacket, note: str) -> None:
        if SSHLogger._debug_level >= 3 and self.logger.isEnabledFor(logging.DEBUG):
            log_packet(self, msg, pkttype, pktid, packet, note)

    log_if_enabled._asks_first = True  # type: ignore[attr-defined]
    SSHLogger.log = log_if_enabled  # type: ignore[method-assign]
    SSHPacketLogger._log_packet = log_packet_if_enabled  # type: ignore[method-assign]


def _keepalive_from_the_last_packet() -> None:
    """asyncssh measures a connection's silence (``keepalive_interval``) by cancelling its
    keepalive timer and arming a new one at every read from the socket: a timer handle made
    and pushed onto the event loop's heap, and one cancelled, about twice per file downloaded.
    Now a read only notes its time; when the one timer fires it is armed again for the
    interval after the last read, if anything arrived since it was armed, and only otherwise
    does what asyncssh does then (count a keepalive and send it). A keepalive therefore goes
    out exactly when it did. A changed interval (``set_keepalive``) re-arms as before."""
    reset = SSHConnection._reset_keepalive_timer
    arm = SSHConnection._set_keepalive_timer
    fire = SSHConnection._keepalive_timer_callback
    if getattr(reset, "_notes_time", False):
        return

    def note_time(self: SSHConnection) -> None:
        if (self._keepalive_timer is not None and self._auth_complete
                and getattr(self, "_rk_armed_for", None) == self._keepalive_interval):
            self._rk_heard = self._loop.time()  # type: ignore[attr-defined]
        else:
            reset(self)

    def arm_noting(self: SSHConnection) -> None:
        arm(self)
        self._rk_armed_for = self._keepalive_interval  # type: ignore[attr-defined]
        self._rk_heard = None  # type: ignore[attr-defined]

    def fire_after_silence(self: SSHConnection) -> None:
        heard: float | None = getattr(self, "_rk_heard", None)
        if heard is not None:
            self._rk_heard = None  # type: ignore[attr-defined]
            due = heard + self._keepalive_interval
            if due > self._loop.time():  # something arrived since: not silent yet
                self._keepalive_timer = self._loop.call_at(due, self._keepalive_timer_callback)
                return
        fire(self)

    note_time._notes_time = True  # type: ignore[attr-defined]
    SSHConnection._reset_keepalive_timer = note_time  # type: ignore[method-assign]
    SSHConnection._set_keepalive_timer = arm_noting  # type: ignore[method-assign]
    SSHConnection._keepalive_timer_callback = fire_after_silence  # type: ignore[method-assign]


def _apply(patch: Callable[[], None]) -> None:
    """A patch of asyncssh's internals is only a saving: an asyncssh whose internals moved
    (a method renamed) runs as it ships, at its own cost, and the transport tests then fail
    to say so."""
    try:
        patch()
    except AttributeError:
        logging.getLogger("report_keeper.sftp").debug("asyncssh not patched: %s", patch.__name__,
                                                     exc_info=True)


_apply(_skip_needless_ignore_packets)
_apply(_log_only_what_is_logged)
_apply(_keepalive_from_the_last_packet)
