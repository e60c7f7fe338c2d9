"""After a headless run: decide what to tell whom, send it, remember what was sent.

``after_sync(profile, result)`` and ``after_check(profile, health, offline=...)`` are called
by the ``sync`` and ``check`` commands once their own result is known. They never raise and
never change that result: what happened is returned as the JSON ``notify`` document
``{"configured", "sent": [...], "failed": [...]}`` and logged (without secrets).

Per channel (``email``, ``webhook``) the plan of ``tui.core.alerts`` decides whether a message
is due; the ledger's memory of that channel is updated only after a successful send, so a
failed one is tried again on the next run. The ping goes out after every run: ``ping_url``
when the run and the health are ok or only warnings, ``ping_url/fail`` when either is critical.

One process at a time sends a profile's alerts (an ``flock`` beside the ledger): the app, a
cron ``sync`` and a ``check`` may overlap; the one that waits too long leaves it to the other.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from tui.core import alerts as al
from tui.core import clock
from tui.core import status as st
from tui.core.ledger import Ledger, LedgerError
from tui.notify.channels import SendError, fail_url, http_request, send_email, show_url

log = logging.getLogger("report_keeper.notify")

LOCK_WAIT = 30.0  # seconds another run may hold the notify lock before this one gives up


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

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"channel": self.channel, "message": self.message}
        if self.channel != "ping" and self.message != "test":
            doc.update(new=self.new, reminders=self.reminders, resolved=self.resolved)
        doc["detail" if self.ok else "error"] = self.detail
        return doc


def _document(configured: bool, outcomes: list[Outcome], note: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "configured": configured,
        "sent": [o.to_json() for o in outcomes if o.ok],
        "failed": [o.to_json() for o in outcomes if not o.ok],
    }
    if note:
        doc["note"] = note
    return doc


@contextmanager
def _notify_lock(ledger_path: Path) -> Iterator[bool]:
    path = Path(f"{ledger_path}.notify-lock")
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


def _now_text(health: Any, tz: Any) -> str:
    now = health.now.astimezone(tz)
    return f"{now:%a} {now.day} {now:%b %Y %H:%M} ({tz})"


def _send(channel: str, cfg: Any, message: al.Message) -> str:
    if channel == al.EMAIL:
        return send_email(cfg, message.subject, message.body)
    status = http_request(cfg.webhook_url, method="POST", document=message.document)
    return f"webhook {show_url(cfg.webhook_url)} answered HTTP {status}"


def _channels(cfg: Any) -> list[str]:
    out = []
    if cfg.email:
        out.append(al.EMAIL)
    if cfg.webhook_url:
        out.append(al.WEBHOOK)
    return out


def _run(profile: Any, health: Any, *, scope: str, run_status: st.Exit) -> dict[str, Any]:
    cfg = profile.notify
    if not cfg.configured:
        return _document(False, [])
    outcomes: list[Outcome] = []
    try:
        ledger = Ledger.open(profile.ledger_path, profile=profile.name)
    except LedgerError as exc:
        log.error("alerts not sent: %s", exc)
        return _document(True, [Outcome(ch, "alert", False, f"the ledger could not be opened: {exc}")
                                for ch in _channels(cfg)])
    try:
        with _notify_lock(profile.ledger_path) as locked:
            if not locked:
                log.info("alerts: another report-keeper run holds the notify lock; left to it")
                return _document(True, [], "another report-keeper run is sending this profile's "
                                 "alerts right now; left to it")
            outcomes.extend(_alerts(profile, health, ledger, scope))
    finally:
        ledger.close()
    if cfg.ping_url:
        outcomes.append(_ping(cfg.ping_url, st.worst([run_status, health.exit_code])))
    return _document(True, outcomes)


def _alerts(profile: Any, health: Any, ledger: Ledger, scope: str) -> list[Outcome]:
    cfg = profile.notify
    tz = profile.timezone
    today = health.now.astimezone(tz).date()
    current = al.alerts_from(health, scope=scope)
    sent_at = clock.now().isoformat(timespec="seconds")
    outcomes = []
    for channel in _channels(cfg):
        try:
            rows = ledger.alert_rows(channel)
        except Exception as exc:  # noqa: BLE001 - a damaged ledger must not break the run
            outcomes.append(Outcome(channel, "alert", False, f"the ledger could not be read ({type(exc).__name__})"))
            continue
        plan = al.plan(channel, current, rows, today=today, sent_at=sent_at, scope=scope)
        try:
            if plan.tidy_save or plan.tidy_delete:
                ledger.save_alert_rows(channel, plan.tidy_save, plan.tidy_delete)
        except LedgerError as exc:
            log.warning("alerts: %s", exc)
        if not plan.should_send:
            continue
        message = al.compose(plan, profile=profile.name, status=health.status,
                             where=f"{profile.host}:{profile.remote_dir}",
                             now_text=_now_text(health, tz))
        counts = dict(new=len(plan.new), reminders=len(plan.reminders), resolved=len(plan.resolved))
        try:
            detail = _send(channel, cfg, message)
        except SendError as exc:
            log.warning("alerts: %s %s not sent: %s (tried again on the next run)",
                        channel, plan.message_kind, exc)
            outcomes.append(Outcome(channel, plan.message_kind, False, str(exc), **counts))
            continue
        log.info("alerts: %s %s sent (%d new, %d reminders, %d ended): %s", channel,
                 plan.message_kind, counts["new"], counts["reminders"], counts["resolved"], detail)
        try:
            ledger.save_alert_rows(channel, plan.save, plan.delete)
        except LedgerError as exc:  # sent, but not remembered: it may be sent once more
            log.error("alerts: sent but not recorded: %s", exc)
            detail += f" (not recorded in the ledger: {exc}; it may be sent again)"
        outcomes.append(Outcome(channel, plan.message_kind, True, detail, **counts))
    return outcomes


def _ping(url: str, status: st.Exit) -> Outcome:
    failing = status >= st.Exit.CRITICAL
    target = fail_url(url) if failing else url
    kind = "fail" if failing else "ok"
    try:
        code = http_request(target, method="GET")
    except SendError as exc:
        log.warning("alerts: ping (%s) failed: %s", kind, exc)
        return Outcome("ping", kind, False, str(exc))
    log.info("alerts: ping (%s) %s answered HTTP %d", kind, show_url(target), code)
    return Outcome("ping", kind, True, f"{show_url(target)} answered HTTP {code}")


def _guard(fn, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Alerts never break the run that triggered them."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - last resort; the message names no secret
        log.exception("alerts failed unexpectedly")
        return _document(True, [Outcome("alerts", "alert", False,
                                        f"unexpected error ({type(exc).__name__}); see the log")])


# --------------------------------------------------------------------------------------------
# Entry points


CONNECTION_ERRORS_NOT = ("interrupted", "ledger")


def after_sync(profile: Any, result: Any) -> dict[str, Any]:
    """Alerts after ``sync``: the health comes from the ledger, as ``check --offline`` sees it,
    plus the connection as far as the sync tested it (it logged in, or it could not)."""
    if not profile.notify.configured:
        return _document(False, [])

    def run() -> dict[str, Any]:
        from tui.core.health import ConnectionStatus, evaluate

        if result.error and result.error_kind not in CONNECTION_ERRORS_NOT:
            connection, scope = ConnectionStatus(ok=False, message=result.error, write_test="skipped"), al.SCOPE_LOGIN
        elif result.error:
            connection, scope = ConnectionStatus.skipped(), al.SCOPE_NONE
        else:
            connection, scope = ConnectionStatus(ok=True, message="sync connected", write_test="skipped"), al.SCOPE_LOGIN
        with Ledger.open(profile.ledger_path, profile=profile.name) as ledger:
            deliveries = ledger.deliveries()
        health = evaluate(profile, deliveries, connection=connection)
        return _run(profile, health, scope=scope, run_status=result.status)

    return _guard(run)


def after_check(profile: Any, health: Any, *, offline: bool) -> dict[str, Any]:
    """Alerts after ``check`` (its own evaluation; ``--offline`` judges no connection)."""
    if not profile.notify.configured:
        return _document(False, [])
    scope = al.SCOPE_NONE if offline else al.SCOPE_FULL
    return _guard(_run, profile, health, scope=scope, run_status=health.exit_code)


def send_test(profile: Any) -> list[Outcome]:
    """A test message through every configured channel (the ping gets a success ping)."""
    cfg = profile.notify
    now = clock.now(profile.timezone)
    stamp = f"{now:%a} {now.day} {now:%b %Y %H:%M} ({profile.timezone})"
    subject = f"[report-keeper] TEST: alerts of profile '{profile.name}' reach you"
    body = (
        f"This is a test message of Report Keeper, profile '{profile.name}' "
        f"({profile.host}:{profile.remote_dir}), sent {stamp} by 'report-keeper notify --test'.\n\n"
        "Alerts about missing, late, empty or unreadable reports will come the same way.\n"
        "Nothing needs to be done.\n"
    )
    document = {"profile": profile.name, "status": "test", "message": "test", "subject": subject,
                "text": subject, "new": [], "reminders": [], "resolved": [], "open": []}
    out: list[Outcome] = []
    for channel in _channels(cfg):
        try:
            if channel == al.EMAIL:
                detail = send_email(cfg, subject, body)
            else:
                code = http_request(cfg.webhook_url, method="POST", document=document)
                detail = f"webhook {show_url(cfg.webhook_url)} answered HTTP {code}"
            out.append(Outcome(channel, "test", True, detail))
        except SendError as exc:
            out.append(Outcome(channel, "test", False, str(exc)))
    if cfg.ping_url:
        o = _ping(cfg.ping_url, st.Exit.OK)
        out.append(Outcome("ping", "test", o.ok, o.detail))
    for o in out:
        log.info("notify --test: %s %s: %s", o.channel, "sent" if o.ok else "FAILED", o.detail)
    return out


def summary_line(doc: dict[str, Any]) -> str | None:
    """One human line about the alerts of a run (None when alerts are not configured)."""
    if not doc.get("configured"):
        return None
    parts = []
    for item in doc["sent"]:
        what = item["message"]
        if item["channel"] == "ping":
            parts.append(f"ping {what} sent")
        else:
            parts.append(f"{item['channel']} {what} sent")
    for item in doc["failed"]:
        parts.append(f"{item['channel']} {item['message']} FAILED ({item['error']}; tried again next run)")
    if doc.get("note"):
        parts.append(doc["note"])
    return "Alerts: " + ("; ".join(parts) if parts else "nothing new to send") + "."
