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
from typing import Protocol, cast

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


class _Aead(Protocol):
    """cryptography's ``AESGCM`` as the shim uses it."""

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes) -> bytes: ...

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes) -> bytes: ...


class _GcmShim(Protocol):
    """asyncssh's ``GCMCipher`` (one direction's key and nonce)."""

    _key: bytes
    _iv: bytes

    def _update_iv(self) -> None: ...


class _GcmPackets(Protocol):
    """asyncssh's ``GCMEncryption`` (the packet layer over the shim)."""

    _cipher: _GcmShim


_Seal = Callable[[_GcmShim, bytes, bytes], tuple[bytes, bytes]]
_Open = Callable[[_GcmShim, bytes, bytes, bytes], "bytes | None"]
_OpenPacket = Callable[[_GcmPackets, int, bytes, bytes, int, bytes], "bytes | None"]
#: asyncssh's own AES-GCM methods (encrypt_and_sign, verify_and_decrypt, decrypt_packet).
_gcm_shipped: list[tuple[_Seal, _Open, _OpenPacket]] = []


def _gcm_key_schedule_once() -> None:
    """asyncssh's AES-GCM shim makes a new ``AESGCM`` object (the key's schedule) for every
    packet it encrypts or decrypts, about a dozen per file downloaded, and copies each packet
    it decrypts twice on the way (its first block joined to the rest, then the tag to that:
    the whole 200 kB of a report, twice). Now each direction's key gets its one ``AESGCM`` at
    its first packet (a new key after a key exchange is a new shim, with its own), and a
    packet is joined once. The bytes sent, the nonces and a bad tag (None, which asyncssh
    turns into its MAC error) are what they were: at start, the patched shim is compared with
    asyncssh's own on a made-up key, and a shim that answers otherwise is left as it ships."""
    from asyncssh.crypto import cipher as cipher_mod  # noqa: PLC0415 - with the patch only
    from asyncssh.encryption import GCMEncryption  # noqa: PLC0415

    gcm = cipher_mod.GCMCipher
    if getattr(gcm.encrypt_and_sign, "_schedules_once", False):
        return
    mac_size: int = cipher_mod._GCM_MAC_SIZE  # asyncssh's (the self-test below checks it)
    invalid_tag: type[Exception] = cipher_mod.InvalidTag
    shipped = cast("tuple[_Seal, _Open, _OpenPacket]",
                   (gcm.encrypt_and_sign, gcm.verify_and_decrypt, GCMEncryption.decrypt_packet))
    _gcm_shipped[:] = [shipped]

    def _aead_of(shim: _GcmShim) -> _Aead:
        """The one ``AESGCM`` of this key, made at its first packet."""
        made: _Aead | None = shim.__dict__.get("_rk_aead")
        if made is None:
            made = shim.__dict__["_rk_aead"] = cast("_Aead", cipher_mod.AESGCM(shim._key))
        return made

    def encrypt_and_sign(self: _GcmShim, header: bytes, data: bytes) -> tuple[bytes, bytes]:
        data = _aead_of(self).encrypt(self._iv, data, header)
        self._update_iv()
        return header + data[:-mac_size], data[-mac_size:]

    def verify_and_decrypt(self: _GcmShim, header: bytes, data: bytes, mac: bytes) -> bytes | None:
        try:
            plain: bytes | None = _aead_of(self).decrypt(self._iv, data + mac, header)
        except invalid_tag:
            plain = None
        self._update_iv()
        return plain

    def decrypt_packet(self: _GcmPackets, seq: int, first: bytes, rest: bytes, header_len: int,
                       mac: bytes) -> bytes | None:
        shim = self._cipher
        try:
            plain: bytes | None = _aead_of(shim).decrypt(
                shim._iv, b"".join((first[header_len:], rest, mac)), first[:header_len])
        except invalid_tag:
            plain = None
        shim._update_iv()
        return plain

    encrypt_and_sign._schedules_once = True  # type: ignore[attr-defined]

    def install(seal: _Seal, open_: _Open, open_packet: _OpenPacket) -> None:
        gcm.encrypt_and_sign = seal  # type: ignore[assignment]
        gcm.verify_and_decrypt = open_  # type: ignore[assignment]
        GCMEncryption.decrypt_packet = open_packet  # type: ignore[assignment]

    install(encrypt_and_sign, verify_and_decrypt, decrypt_packet)
    try:
        same = _gcm_answers_as_shipped(gcm, cast("Callable[[object], object]", GCMEncryption), shipped)
    except Exception:  # noqa: BLE001 - any surprise: asyncssh's own shim, as it ships
        same = False
    if not same:
        install(*shipped)
        logging.getLogger("report_keeper.sftp").debug("asyncssh's AES-GCM shim not patched: it "
                                                     "answers otherwise")


def _gcm_answers_as_shipped(gcm: Callable[[str, bytes, bytes], object],
                            packets: Callable[[object], object],
                            shipped: tuple[_Seal, _Open, _OpenPacket]) -> bool:
    """The patched AES-GCM shim (``gcm``, under ``packets``) gives the very packets,
    plaintexts and bad-tag answers of asyncssh's own methods (``shipped``) on a made-up key,
    several packets in a row (the nonce moves on with each)."""
    encrypt, verify, decrypt_packet = shipped
    key, iv, name = bytes(range(16)), bytes(range(100, 112)), "aes128-gcm"

    def two() -> tuple[_GcmShim, _GcmShim]:
        return cast("_GcmShim", gcm(name, key, iv)), cast("_GcmShim", gcm(name, key, iv))

    ours, theirs = two()
    ours_in, theirs_in = (cast("_GcmPackets", packets(gcm(name, key, iv))) for _ in range(2))
    for n, body in enumerate((b"\x05" + bytes(27), bytes(range(256)) * 9, b"x" * 44)):
        header = len(body).to_bytes(4, "big")
        sealed = ours.encrypt_and_sign(header, body)  # type: ignore[attr-defined]
        if sealed != encrypt(theirs, header, body):
            return False
        packet, mac = sealed
        first, rest = packet[:16], packet[16:]
        tag = bytes([mac[0] ^ 1]) + mac[1:] if n == 1 else mac  # the second one tampered with
        mine = ours_in.decrypt_packet(n, first, rest, 4, tag)  # type: ignore[attr-defined]
        if mine != decrypt_packet(theirs_in, n, first, rest, 4, tag) or (mine == body) != (n != 1):
            return False
    sealer, ours, theirs = cast("_GcmShim", gcm(name, key, iv)), *two()
    packet, tag = sealer.encrypt_and_sign(b"\0\0\0\4", b"abcd")  # type: ignore[attr-defined]
    opened = ours.verify_and_decrypt(b"\0\0\0\4", packet[4:], tag)  # type: ignore[attr-defined]
    return bool(opened == verify(theirs, b"\0\0\0\4", packet[4:], tag) == b"abcd")


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
_apply(_gcm_key_schedule_once)
