"""After a headless run: decide what to tell whom, send it, remember what was sent.

``after_sync(profile, result)`` and ``after_check(profile, health, offline=...)`` are called
by the ``sync`` and ``check`` commands once their own result is known. They never raise and
never change that result: what happened is returned as the JSON ``notify`` document
``{"configured", "sent": [...], "failed": [...]}`` and logged (without secrets).

Per channel (``email``, ``webhook``) the plan of ``tui.core.alerts`` decides whether a message
is due; the ledger's memory of that channel is updated only after a successful send, so a
failed one is tried again on the next run. The ping goes out after every run: ``ping_url``
when the run and the health are ok or only warnings, ``ping_url/fail`` when either is critical
or an alert could not be sent (the ping is the switch that watches the alerting itself).

One process at a time sends a profile's alerts (an ``flock`` on the profile's own file beside
the ledger): the app, a cron ``sync`` and a ``check`` may overlap; the one that waits too long
leaves it to the other.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import NotRequired, Protocol, TypedDict

from tui.core import alerts as al
from tui.core import clock
from tui.core import status as st
from tui.core.config import NotifyConfig, Profile
from tui.core.health import ConnectionStatus, HealthReport, evaluate
from tui.core.ledger import LEDGER_ERRORS, AlertRow, Ledger, LedgerError
from tui.core.model import JSONObject, WriteTest
from tui.core.names import escape_name
from tui.notify.channels import EmailReceipt, SendError, fail_url, http_request, send_email, show_url

log = logging.getLogger("report_keeper.notify")

LOCK_WAIT = 30.0  # seconds another run may hold the notify lock before this one gives up

#: Destinations (``host:port`` of the SMTP server, ``scheme://host:port/…`` of a URL) that did
#: not answer in time in this process, with when. The other profiles of an ``--all-profiles``
#: run do not try them again: with every member library's profile pointing at one relay that
#: stopped answering, each waited out the whole deadline in turn. Each says so and tries on its
#: next run; after ``UNANSWERED_MEMORY`` seconds (a long-lived process) it is tried again.
_UNANSWERED: dict[str, float] = {}
UNANSWERED_MEMORY = 600.0


class OutcomeJSON(TypedDict):
    """One channel's line of the ``notify`` document."""

    channel: str
    message: str
    new: NotRequired[int]
    reminders: NotRequired[int]
    resolved: NotRequired[int]
    recipients: NotRequired[list[str]]  # e-mail: who got it (sent) or did not (failed)
    detail: NotRequired[str]  # sent: where it went
    error: NotRequired[str]  # failed: why


class NotifyDocument(TypedDict):
    """The JSON ``notify`` document of ``sync`` and ``check`` (docs/JSON.md)."""

    configured: bool
    sent: list[OutcomeJSON]
    failed: list[OutcomeJSON]
    note: NotRequired[str]


class RunResult(Protocol):
    """What the alerts need of a ``sync`` result (``tui.sftp.sync.SyncResult``)."""

    @property
    def status(self) -> st.Exit: ...
    @property
    def error(self) -> str | None: ...
    @property
    def error_kind(self) -> str | None: ...


@dataclass
class Outcome:
    """What happened on one channel."""

    channel: str  # email | webhook | ping
    message: str  # alert | reminder | resolved | ok | fail | test
    ok: bool
    detail: str  # where it went (sent) or why it failed
    new: int = 0
    reminders: int = 0
    resolved: int = 0
    recipients: list[str] | None = None  # e-mail: the addresses this outcome is about

    def to_json(self) -> OutcomeJSON:
        doc = OutcomeJSON(channel=self.channel, message=self.message)
        if self.channel != "ping" and self.message != "test":
            doc["new"], doc["reminders"], doc["resolved"] = self.new, self.reminders, self.resolved
        if self.recipients is not None:
            doc["recipients"] = self.recipients
        if self.ok:
            doc["detail"] = self.detail
        else:
            doc["error"] = self.detail
        return doc


def _document(configured: bool, outcomes: list[Outcome], note: str | None = None) -> NotifyDocument:
    doc: NotifyDocument = {
        "configured": configured,
        "sent": [o.to_json() for o in outcomes if o.ok],
        "failed": [o.to_json() for o in outcomes if not o.ok],
    }
    if note:
        doc["note"] = note
    return doc


def lock_path(profile: Profile) -> Path:
    """The file whose ``flock`` one process holds while it sends ``profile``'s alerts.

    One per profile, beside the ledger: profiles may share a ledger file, and a run sending
    one profile's alerts (waiting on a slow server, up to the send deadlines) must not make a
    run of another profile give its own up as "left to" it. The name carries a hash of the
    profile's name, which may be any text."""
    digest = hashlib.sha256(profile.name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return Path(f"{profile.ledger_path}.notify-lock-{digest}")


@contextmanager
def _notify_lock(path: Path) -> Iterator[bool]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        stop = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > stop:
                    yield False
                    return
                time.sleep(0.2)
        yield True
    finally:
        os.close(fd)


def _now_text(health: HealthReport, tz: tzinfo) -> str:
    now = health.now.astimezone(tz)
    return f"{now:%a} {now.day} {now:%b %Y %H:%M} ({tz})"


def _destination(channel: str, cfg: NotifyConfig) -> str:
    if channel == al.EMAIL:
        return f"{cfg.smtp_host}:{cfg.port}"
    return show_url(cfg.webhook_url or "")


@contextmanager
def _unless_unanswered(destination: str) -> Iterator[None]:
    """Skip ``destination`` when it did not answer a moment ago; remember when it does not."""
    since = _UNANSWERED.get(destination)
    if since is not None and time.monotonic() - since < UNANSWERED_MEMORY:
        raise SendError(f"not tried: {destination} did not answer in time earlier in this run "
                        "(for another profile); tried again on the next run")
    try:
        yield
    except SendError as exc:
        if exc.unanswered:
            _UNANSWERED[destination] = time.monotonic()
        raise
    _UNANSWERED.pop(destination, None)


def _send_webhook(cfg: NotifyConfig, message: al.Message) -> str:
    url = cfg.webhook_url or ""
    with _unless_unanswered(show_url(url)):
        status = http_request(url, method="POST", document=message.document)
    return f"webhook {show_url(url)} answered HTTP {status}"


def _send_email(cfg: NotifyConfig, message: al.Message, to: list[str]) -> EmailReceipt:
    with _unless_unanswered(_destination(al.EMAIL, cfg)):
        return send_email(cfg, message.subject, message.body, to=to)


def _channels(cfg: NotifyConfig) -> list[str]:
    out = []
    if cfg.email:
        out.append(al.EMAIL)
    if cfg.webhook_url:
        out.append(al.WEBHOOK)
    return out


def _run(profile: Profile, health: HealthReport, *, scope: str, run_status: st.Exit) -> NotifyDocument:
    cfg = profile.notify
    if not cfg.configured:
        return _document(False, [])
    outcomes: list[Outcome] = []
    try:
        ledger = Ledger.open(profile.ledger_path, profile=profile.name)
    except LedgerError as exc:
        log.error("alerts not sent: %s", exc)
        outcomes = [Outcome(ch, "alert", False, f"the ledger could not be opened: {exc}")
                    for ch in _channels(cfg)]
    else:
        try:
            with _notify_lock(lock_path(profile)) as locked:
                if not locked:
                    log.info("alerts: another report-keeper run holds the notify lock; left to it")
                    return _document(True, [], "another report-keeper run is sending this profile's "
                                     "alerts right now; left to it")
                outcomes.extend(_alerts(profile, health, ledger, scope))
        finally:
            ledger.close()
    if cfg.ping_url:
        # The ping watches the alerting too: an alert nobody could be sent is as critical as
        # the problem it was about, so the monitoring service tells someone by its own way.
        undelivered = any(not o.ok for o in outcomes)
        if undelivered:
            log.warning("alerts: an alert could not be sent; the ping says fail")
        outcomes.append(_ping(cfg.ping_url, st.worst(
            [run_status, health.exit_code, st.Exit.CRITICAL if undelivered else st.Exit.OK])))
    return _document(True, outcomes)


def email_memory(address: str) -> str:
    """The ledger's name for what ``address`` has been told (each recipient has its own)."""
    return f"{al.EMAIL}:{address}"


def _configured(cfg: NotifyConfig) -> set[str]:
    """The memories this config's channels use."""
    wanted = {email_memory(a) for a in cfg.email_to}
    if cfg.email_to:
        wanted.add(al.EMAIL)  # an older release's memory for the list, taken over below
    if cfg.webhook_url:
        wanted.add(al.WEBHOOK)
    return wanted


def _memory(ledger: Ledger, cfg: NotifyConfig) -> dict[str, list[AlertRow]]:
    """Every channel's memory, read once; the channels this config has are marked as
    configured, and those no run has had configured for a week are forgotten
    (:func:`tui.core.alerts.upkeep`).

    Kept for ever, a removed address's rows decided what it was told once it was added again,
    months later: an alert open when it was removed that ended and came back meanwhile was
    "told already", so it heard nothing of it. Dropped at once, the memory of an address
    another config sharing the ledger sends to (or one added after this run loaded the
    config) was lost, and that address was told everything again."""
    memory = ledger.alert_memory()
    mark, forget = al.upkeep(memory, _configured(cfg), clock.now())
    try:
        if forget:
            ledger.forget_alert_channels(forget)
        if mark:
            ledger.mark_alert_channels(mark)
    except LEDGER_ERRORS as exc:  # the channels still run; it is tried again next time
        log.warning("alerts: the memory of the channels was not kept up to date: %s", exc)
        return memory
    for channel in forget:
        log.info("alerts: forgot what %s was told (%d alerts): no run had it configured for %d days; "
                 "told what is open, once, if configured again", escape_name(channel),
                 len(memory.pop(channel)), al.FORGET_AFTER.days)
    return memory


def _recipients_rows(ledger: Ledger, cfg: NotifyConfig,
                     memory: dict[str, list[AlertRow]]) -> dict[str, list[AlertRow]]:
    """What each recipient of ``email_to`` has been told. The e-mail channel once had one
    memory for the whole list (rows under plain ``email``): every recipient without rows of
    its own takes those over, once, so an upgrade sends nobody an alert again."""
    shared = memory.get(al.EMAIL, [])
    takers = [a for a in cfg.email_to if shared and not memory.get(email_memory(a))]
    for address in takers:
        ledger.save_alert_rows(email_memory(address), [{**r, "id": None} for r in shared])
    if shared:
        ledger.save_alert_rows(al.EMAIL, [], [r["id"] for r in shared if r["id"] is not None])
    if takers:  # the copies' ids (once, on the first run after an upgrade)
        memory = ledger.alert_memory()
    return {a: memory.get(email_memory(a), []) for a in cfg.email_to}


@dataclass
class _Due:
    """A message due to some recipients (or the webhook), each with its own plan."""

    message: al.Message
    kind: str
    plans: dict[str, al.Plan]  # memory name -> plan
    to: list[str]  # e-mail: the addresses

    @property
    def counts(self) -> tuple[int, int, int]:
        plan = next(iter(self.plans.values()))
        return len(plan.new), len(plan.reminders), len(plan.resolved)


def _alerts(profile: Profile, health: HealthReport, ledger: Ledger, scope: str) -> list[Outcome]:
    cfg = profile.notify
    tz = profile.timezone
    today = health.now.astimezone(tz).date()
    current = al.alerts_from(health, scope=scope)
    sent_at = clock.now().isoformat(timespec="seconds")
    outcomes: list[Outcome] = []
    memory: dict[str, list[AlertRow]] = {}
    unread: Exception | None = None
    try:
        memory = _memory(ledger, cfg)
    except LEDGER_ERRORS as exc:  # each channel says so below
        unread = exc

    def due(memories: dict[str, tuple[str | None, list[AlertRow]]]) -> list[_Due]:
        """Plan each memory; recipients that would get the very same text get one message."""
        out: dict[tuple[str, str], _Due] = {}
        for memory, (address, rows) in memories.items():
            plan = al.plan(al.EMAIL if address else al.WEBHOOK, current, rows, today=today,
                           sent_at=sent_at, scope=scope)
            try:
                if plan.tidy_save or plan.tidy_delete:
                    ledger.save_alert_rows(memory, plan.tidy_save, plan.tidy_delete)
            except LedgerError as exc:
                log.warning("alerts: %s", exc)
            if not plan.should_send:
                continue
            message = al.compose(plan, profile=profile.name, status=health.status,
                                 where=_where(profile), now_text=_now_text(health, tz), tz=tz)
            d = out.setdefault((message.subject, message.body), _Due(message, plan.message_kind, {}, []))
            d.plans[memory] = plan
            if address:
                d.to.append(address)
        return list(out.values())

    def remember(d: _Due, memories: list[str], detail: str) -> str:
        failed: LedgerError | None = None
        for memory in memories:  # each one on its own: one that fails leaves the others told
            plan = d.plans[memory]
            try:
                ledger.save_alert_rows(memory, plan.save, plan.delete)
            except LedgerError as exc:  # sent, but not remembered: it may be sent once more
                log.error("alerts: sent but not recorded: %s", exc)
                failed = exc
        if failed is not None:
            return detail + f" (not recorded in the ledger: {failed}; it may be sent again)"
        return detail

    for channel in _channels(cfg):
        memories: dict[str, tuple[str | None, list[AlertRow]]]
        try:
            if unread is not None:
                raise unread
            if channel == al.EMAIL:
                memories = {email_memory(a): (a, rows)
                            for a, rows in _recipients_rows(ledger, cfg, memory).items()}
            else:
                memories = {al.WEBHOOK: (None, memory.get(al.WEBHOOK, []))}
            messages = due(memories)
        except LEDGER_ERRORS as exc:  # a damaged ledger must not break the run
            log.warning("alerts: %s: the ledger could not be read: %s", channel, exc)
            outcomes.append(Outcome(channel, "alert", False,
                                    f"the ledger could not be read ({type(exc).__name__})"))
            continue
        except Exception as exc:  # a bug planning one channel must not keep the alert from the other
            log.exception("alerts: %s: planning failed (tried again on the next run)", channel)
            outcomes.append(Outcome(channel, "alert", False, _unexpected(exc)))
            continue
        for d in messages:
            new, reminders, resolved = d.counts
            to = d.to if channel == al.EMAIL else None
            try:
                if channel == al.EMAIL:
                    receipt = _send_email(cfg, d.message, d.to)
                    detail = str(receipt)
                    got = [email_memory(a) for a in receipt.accepted]
                else:
                    detail = _send_webhook(cfg, d.message)
                    got = list(d.plans)
            except SendError as exc:
                log.warning("alerts: %s %s not sent: %s (tried again on the next run)", channel, d.kind, exc)
                outcomes.append(Outcome(channel, d.kind, False, str(exc), new, reminders, resolved, to))
                continue
            except Exception as exc:  # a bug in one channel must not keep the alert from the other
                log.exception("alerts: %s %s not sent (tried again on the next run)", channel, d.kind)
                outcomes.append(Outcome(channel, d.kind, False, _unexpected(exc), new, reminders, resolved, to))
                continue
            log.info("alerts: %s %s sent (%d new, %d reminders, %d ended): %s", channel, d.kind,
                     new, reminders, resolved, detail)
            detail = remember(d, got, detail)
            if channel != al.EMAIL:
                outcomes.append(Outcome(channel, d.kind, True, detail, new, reminders, resolved))
                continue
            outcomes.append(Outcome(channel, d.kind, True, detail, new, reminders, resolved,
                                    list(receipt.accepted)))
            if receipt.refused:  # they did not get it: not remembered, so tried again next run
                log.warning("alerts: %s %s: %s (tried again on the next run)", channel, d.kind,
                            receipt.refusal())
                outcomes.append(Outcome(channel, d.kind, False, receipt.refusal(), new, reminders,
                                        resolved, [r.address for r in receipt.refused]))
    return outcomes


def _ping(url: str, status: st.Exit) -> Outcome:
    failing = status >= st.Exit.CRITICAL
    target = fail_url(url) if failing else url
    kind = "fail" if failing else "ok"
    try:
        with _unless_unanswered(show_url(url)):
            code = http_request(target, method="GET")
    except SendError as exc:
        log.warning("alerts: ping (%s) failed: %s", kind, exc)
        return Outcome("ping", kind, False, str(exc))
    except Exception as exc:  # a bug here must not hide what the other channels did
        log.exception("alerts: ping (%s) failed unexpectedly", kind)
        return Outcome("ping", kind, False, _unexpected(exc))
    log.info("alerts: ping (%s) %s answered HTTP %d", kind, show_url(target), code)
    return Outcome("ping", kind, True, f"{show_url(target)} answered HTTP {code}")


def _unexpected(exc: Exception) -> str:
    """A bug's outcome: its type only (its text may hold anything), the log has the rest."""
    return f"unexpected error ({type(exc).__name__}); see the log"


def _guard(run: Callable[[], NotifyDocument]) -> NotifyDocument:
    """Alerts never break the run that triggered them."""
    try:
        return run()
    except Exception as exc:  # last resort; the message names no secret
        log.exception("alerts failed unexpectedly")
        return _document(True, [Outcome("alerts", "alert", False, _unexpected(exc))])


# --------------------------------------------------------------------------------------------
# Entry points


CONNECTION_ERRORS_NOT = ("interrupted", "ledger")


def after_sync(profile: Profile, result: RunResult) -> NotifyDocument:
    """Alerts after ``sync``: the health comes from the ledger, as ``check --offline`` sees it,
    plus the connection as far as the sync tested it (it logged in, or it could not)."""
    if not profile.notify.configured:
        return _document(False, [])

    def run() -> NotifyDocument:
        if result.error and result.error_kind not in CONNECTION_ERRORS_NOT:
            connection = ConnectionStatus(ok=False, message=result.error, write_test=WriteTest.SKIPPED)
            scope = al.SCOPE_LOGIN
        elif result.error:
            connection, scope = ConnectionStatus.skipped(), al.SCOPE_NONE
        else:
            connection = ConnectionStatus(ok=True, message="sync connected", write_test=WriteTest.SKIPPED)
            scope = al.SCOPE_LOGIN
        with Ledger.open(profile.ledger_path, profile=profile.name) as ledger:
            deliveries = ledger.deliveries()
        health = evaluate(profile, deliveries, connection=connection)
        return _run(profile, health, scope=scope, run_status=result.status)

    return _guard(run)


def after_check(profile: Profile, health: HealthReport, *, offline: bool) -> NotifyDocument:
    """Alerts after ``check`` (its own evaluation; ``--offline`` judges no connection)."""
    if not profile.notify.configured:
        return _document(False, [])
    scope = al.SCOPE_NONE if offline else al.SCOPE_FULL
    return _guard(lambda: _run(profile, health, scope=scope, run_status=health.exit_code))


def send_test(profile: Profile) -> list[Outcome]:
    """A test message through every configured channel (the ping gets a success ping)."""
    cfg = profile.notify
    now = clock.now(profile.timezone)
    stamp = f"{now:%a} {now.day} {now:%b %Y %H:%M} ({profile.timezone})"
    name = escape_name(profile.name)  # a TOML key: any text, line breaks included
    subject = f"[report-keeper] TEST: alerts of profile '{name}' reach you"
    body = (
        f"This is a test message of Report Keeper, profile '{name}' "
        f"({_where(profile)}), sent {stamp} by 'report-keeper notify --test'.\n\n"
        "Alerts about missing, late, empty or unreadable reports will come the same way.\n"
        "Nothing needs to be done.\n"
    )
    document: JSONObject = {"profile": profile.name, "status": "test", "message": "test",
                            "subject": subject, "text": subject, "new": [], "reminders": [],
                            "resolved": [], "open": []}
    out: list[Outcome] = []
    for channel in _channels(cfg):
        try:
            if channel == al.EMAIL:
                receipt = send_email(cfg, subject, body)
                if receipt.refused:  # some got it, some did not: that is no working channel
                    out.append(Outcome(channel, "test", False, f"{receipt}; {receipt.refusal()}"))
                    continue
                detail = str(receipt)
            else:
                url = cfg.webhook_url or ""
                code = http_request(url, method="POST", document=document)
                detail = f"webhook {show_url(url)} answered HTTP {code}"
            out.append(Outcome(channel, "test", True, detail))
        except SendError as exc:
            out.append(Outcome(channel, "test", False, str(exc)))
        except Exception as exc:  # a bug in one channel must not keep the test from the others
            log.exception("notify --test: %s failed unexpectedly", channel)
            out.append(Outcome(channel, "test", False, _unexpected(exc)))
    if cfg.ping_url:
        o = _ping(cfg.ping_url, st.Exit.OK)
        out.append(Outcome("ping", "test", o.ok, o.detail))
    for o in out:
        log.info("notify --test: %s %s: %s", o.channel, "sent" if o.ok else "FAILED", o.detail)
    return out


def summary_line(doc: NotifyDocument) -> str | None:
    """One human line about the alerts of a run (None when alerts are not configured)."""
    if not doc["configured"]:
        return None
    parts = []
    for item in doc["sent"]:
        what = item["message"]
        if item["channel"] == "ping":
            parts.append(f"ping {what} sent")
        else:
            parts.append(f"{item['channel']} {what} sent")
    for item in doc["failed"]:
        parts.append(f"{item['channel']} {item['message']} FAILED ({item.get('error')}; tried again next run)")
    if doc.get("note"):
        parts.append(doc["note"])
    return "Alerts: " + ("; ".join(parts) if parts else "nothing new to send") + "."


#: Folders named in a message before "and N more".
WHERE_FOLDERS = 3


def _where(profile: Profile) -> str:
    """``host:folder`` for the message, every watched folder (up to a few) when there are several."""
    folders = profile.folders
    shown = ", ".join(escape_name(f) for f in folders[:WHERE_FOLDERS])
    if len(folders) > WHERE_FOLDERS:
        shown += f" and {len(folders) - WHERE_FOLDERS} more"
    return f"{escape_name(profile.host)}:{shown}"
