"""Notifications: the coordinator tells people what happened, through Apprise, off the job's path.

Four events, each decided at one place in the coordinator:

- ``done``: a job's outputs are committed (``pipeline.watch.finish.commit_job``);
- ``quarantined``: a recording was set aside (``finish.quarantine_job``);
- ``waiting``: the machine is at fault (disk full, a read-only folder …) and a job waits it out
  (``finish.schedule_retry``, once when the job starts waiting; one message per problem until a
  job is done again, so a full disk is one message on a phone, not one per queued recording);
- ``stopped``: the service stops on an error (``pipeline.watch.service``).

A message names the file, the profile, the recording's duration and language, the time taken
and, where the web page has an address others can open, the link to the job there; the
transcript's text only with ``notify_text: true``.

Delivery never delays or fails a job: an event only builds its message and puts it on a
bounded queue (a full queue drops it, logged). One sender thread delivers each message to each
URL, retrying a failed delivery with doubling waits a bounded number of times
(``notify.attempts``, ``notify.retry_backoff_seconds``); a delivery given up on is logged once,
with the host it was for. At shutdown the sender gets :data:`FLUSH_SECONDS` to finish, then
whatever is left is dropped (logged).

There is one sender per ``hushdrop watch`` (:func:`start`, :func:`stop`); without one (tests
of single functions, ``hushdrop run``) the events do nothing.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from hushdrop.pipeline.logs import job_log, log
from hushdrop.pipeline.names import display_name
from hushdrop.pipeline.text import terminal_text

if TYPE_CHECKING:
    from hushdrop.pipeline.config import Settings
    from hushdrop.pipeline.config.schema import NotifyRoute
    from hushdrop.pipeline.job import Job
    from hushdrop.pipeline.watch.ledger import JobRow

QUEUE_SIZE = 256  # messages waiting for the sender; more are dropped (logged), never waited for
FLUSH_SECONDS = 5.0  # what a stopping service gives the sender to deliver what is queued
TEXT_LIMIT = 3000  # characters of transcript text in a message; the outputs hold all of it
WAITING_REPEAT_SECONDS = 6 * 3600  # the same unsolved problem is told again after this long


@dataclass(frozen=True)
class Message:
    event: str
    title: str
    body: str
    urls: tuple[str, ...]
    job_id: int | None = None


@dataclass
class _Delivery:
    message: Message
    url: str
    tries: int = 0


# ---------------------------------------------------------------------------
# where messages go


def route_for(settings: "Settings", profile_name: str | None) -> "NotifyRoute":
    """A profile's route: its own ``notify:`` (inherited from ``default`` like any profile key),
    else the global one."""
    profile = settings.profiles.get(profile_name) if profile_name else None
    if profile is not None and profile.notify is not None:
        return profile.notify
    return settings.notify


def wants_text(settings: "Settings", profile_name: str) -> bool:
    profile = settings.profiles.get(profile_name)
    if profile is not None and profile.notify_text is not None:
        return profile.notify_text
    return settings.notify_text


def all_urls(settings: "Settings", event: str | None = None) -> list[str]:
    """Every URL some route sends to (``event``: only the routes that send that event), once each."""
    routes = [settings.notify, *(p.notify for p in settings.profiles.values() if p.notify is not None)]
    return list(dict.fromkeys(u for r in routes if event is None or r.wants(event) for u in r.urls))


def contacted_host(url: str) -> str:
    """The server a notification to ``url`` is sent to, as config check prints it: the service's
    own API host for hosted services (Telegram, Discord, ntfy.sh …), the SMTP server for e-mail,
    else the host (and port) the URL names. Never the URL itself: it often holds a token."""
    import apprise

    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return "?"
    smtp = getattr(plugin, "smtp_host", None)
    if isinstance(smtp, str) and smtp:
        return f"{smtp}:{plugin.port}" if getattr(plugin, "port", None) else smtp
    fixed = getattr(plugin, "notify_url", None)  # a hosted service's one API address
    if not fixed and getattr(plugin, "mode", None) == "cloud":
        fixed = getattr(plugin, "cloud_notify_url", None)
    if isinstance(fixed, str) and fixed.startswith(("http://", "https://")):
        return urlsplit(fixed).netloc
    host = getattr(plugin, "host", None) or ""
    if "." in host or ":" in host or host == "localhost":  # a server the URL names (self-hosted ones)
        port = getattr(plugin, "port", None)
        return f"{host}:{port}" if port else host
    service = getattr(plugin, "service_name", None) or type(plugin).__name__
    site = getattr(plugin, "service_url", None)
    return f"{service}'s servers ({urlsplit(site).netloc})" if isinstance(site, str) and "://" in site else f"{service}'s servers"


def page_address(settings: "Settings") -> str | None:
    """The web page's address as someone notified can open it: ``notify.page_url``, else
    ``web.listen`` when it names one address other machines reach. None for a loopback address
    (only this machine opens it) or every address (0.0.0.0: which name reaches it is unknown)."""
    if settings.notify.page_url:
        return settings.notify.page_url.rstrip("/")
    from hushdrop.pipeline.web.address import is_loopback, parse_listen

    host, port = parse_listen(settings.web.listen)
    if is_loopback(host) or host in ("0.0.0.0", "::", "*"):
        return None
    scheme = "https" if settings.web.tls_cert is not None else "http"
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def job_link(settings: "Settings", job_id: int) -> str | None:
    base = page_address(settings)
    return f"{base}/jobs/{job_id}" if base else None


# ---------------------------------------------------------------------------
# the messages


def clock_text(seconds: float) -> str:
    """``0:32``, ``12:05``, ``1:02:03``: a duration as a person reads it on a phone."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _lines(fields: list[tuple[str, Any]]) -> str:
    """``Label: value`` lines; each value stays on its line (a name's newline or escape sequence is
    shown as an escape), so a file name cannot forge a line such as a link."""
    return "\n".join(f"{label}: {terminal_text(value)}" for label, value in fields if value not in (None, ""))


def done_message(settings: "Settings", row: "JobRow", job: "Job") -> tuple[str, str]:
    name = display_name(row.name)
    duration = job.facts.duration_s if job.facts is not None else None
    language = job.transcript.language
    if job.translated and language:
        language = f"{language}, translated into English"
    body = _lines([
        ("File", name),
        ("Profile", row.profile),
        ("Duration", clock_text(duration) if duration is not None else None),
        ("Language", language or "unknown"),
        ("Time taken", clock_text(time.time() - row.created_at)),
        ("Result", job_link(settings, row.id)),
    ])
    if wants_text(settings, row.profile):
        text = job.transcript.text
        if len(text) > TEXT_LIMIT:
            text = text[:TEXT_LIMIT].rstrip() + " … (the whole transcript is in the outbox)"
        body += f"\n\n{text or '(no speech)'}"
    return f"Transcribed: {terminal_text(name)}", body


def quarantined_message(settings: "Settings", row: "JobRow", stage: str, reason: str) -> tuple[str, str]:
    from hushdrop.pipeline.watch.finish import without_own_paths

    name = display_name(row.name)
    body = _lines([
        ("File", name),
        ("Profile", row.profile),
        ("Stage", stage),
        ("Reason", without_own_paths(reason, settings)),
        ("What to do", "the recording is in quarantine, unchanged, beside a note that says why; "
         "see the note (or the page), fix it, and drop the file in again"),
        ("Job", job_link(settings, row.id)),
    ])
    return f"Set aside: {terminal_text(name)}", body


def waiting_message(settings: "Settings", row: "JobRow", stage: str, problem: str) -> tuple[str, str]:
    from hushdrop.pipeline.watch.finish import without_own_paths

    body = _lines([
        ("What is wrong", f"{stage}: {without_own_paths(problem, settings)}"),
        ("What to do", "free space on the disk, or give hushdrop's user back its folders (permissions, a read-only "
         "mount); `hushdrop doctor` shows what it finds. Waiting jobs go on by themselves once it is fixed; after "
         f"{settings.environment_retry_hours:g} h they are set aside in quarantine"),
        ("First job waiting", f"{display_name(row.name)} (profile {row.profile})"),
    ])
    return "hushdrop is waiting: the machine needs attention", body


def stopped_message(reason: str) -> tuple[str, str]:
    body = _lines([
        ("Why", reason),
        ("What to do", "fix what the reason says (`hushdrop doctor` checks the setup), then start hushdrop again; "
         "recordings already taken wait in its spool and are done when it runs again"),
    ])
    return "hushdrop stopped on an error", body


# ---------------------------------------------------------------------------
# the sender


class Sender:
    """One thread that delivers queued messages to their URLs, with bounded, doubling retries."""

    def __init__(self, attempts: int, backoff_seconds: float):
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self._inbox: queue.Queue[Message | None] = queue.Queue(QUEUE_SIZE)
        self._due: list[tuple[float, int, _Delivery]] = []  # (when, order, delivery): retries waiting
        self._order = itertools.count()
        self._plugins: dict[str, Any] = {}
        self._deadline: float | None = None  # set by close(): nothing is tried after it
        self._dropped_full = 0
        self._waiting_told: dict[tuple[str, str], float] = {}  # problem → when it was told
        self._lock = threading.Lock()
        # Apprise logs each failed try itself; the sender logs one line per notification given up on
        logging.getLogger("apprise").propagate = False
        self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
        self._thread.start()

    # -- the coordinator's side: never blocks -------------------------------------------

    def send(self, message: Message) -> None:
        if not message.urls or self._deadline is not None:
            return
        try:
            self._inbox.put_nowait(message)
        except queue.Full:
            with self._lock:
                self._dropped_full += 1
                first = self._dropped_full == 1
            if first:
                job_log(message.job_id).warning(
                    "notification %r not sent: %d are already waiting for the sender (a receiver that is slow "
                    "or down?); further ones are dropped while the queue is full", message.event, QUEUE_SIZE,
                )
            return
        with self._lock:
            dropped, self._dropped_full = self._dropped_full, 0
        if dropped:
            log().warning("the notification queue has room again; %d notification(s) were dropped while it was full", dropped)

    def first_of_problem(self, key: tuple[str, str]) -> bool:
        """True the first time a waiting problem is told (again after WAITING_REPEAT_SECONDS, or
        once a job was done in between: :meth:`problems_solved`)."""
        now = time.monotonic()
        with self._lock:
            told = self._waiting_told.get(key)
            if told is not None and now - told < WAITING_REPEAT_SECONDS:
                return False
            self._waiting_told[key] = now
            return True

    def problems_solved(self) -> None:
        with self._lock:
            self._waiting_told.clear()

    def close(self, timeout: float = FLUSH_SECONDS) -> None:
        """Deliver what is queued for at most ``timeout`` seconds, then give the rest up (logged)."""
        self._deadline = time.monotonic() + timeout
        try:
            self._inbox.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(max(0.0, self._deadline - time.monotonic()) + 0.5)

    # -- the sender thread -----------------------------------------------------------------

    def _run(self) -> None:
        closing = False
        while True:
            now = time.monotonic()
            if self._deadline is not None and now >= self._deadline:
                break
            while self._due and self._due[0][0] <= now:
                self._try(heapq.heappop(self._due)[2])
                now = time.monotonic()
            if closing and not self._due:
                break
            wait = (self._due[0][0] - time.monotonic()) if self._due else None
            if self._deadline is not None:
                wait = min(wait if wait is not None else 1.0, self._deadline - time.monotonic())
            try:
                message = self._inbox.get(timeout=max(0.0, wait) if wait is not None else None)
            except queue.Empty:
                continue
            if message is None:
                closing = True
                continue
            for url in message.urls:
                self._try(_Delivery(message, url))
        left = len(self._due)
        while True:
            try:
                left += self._inbox.get_nowait() is not None
            except queue.Empty:
                break
        if left:
            log().warning("%d notification(s) not sent: hushdrop stopped before they could be delivered", left)

    def _plugin(self, url: str):
        plugin = self._plugins.get(url)
        if plugin is None:
            import apprise

            plugin = self._plugins[url] = apprise.Apprise.instantiate(url)
        return plugin

    def _try(self, delivery: _Delivery) -> None:
        import apprise

        delivery.tries += 1
        reason = "the service refused it"
        try:
            with apprise.LogCapture(level=logging.WARNING) as captured:
                plugin = self._plugin(delivery.url)
                sent = plugin is not None and plugin.notify(body=delivery.message.body, title=delivery.message.title)
            lines = [line for line in captured.getvalue().splitlines() if line.strip()]
            if lines:
                reason = lines[-1].split(" - ", 2)[-1]
        except Exception as exc:  # a notification must never take the sender down
            sent, reason = False, f"{type(exc).__name__}: {exc}"
        if sent:
            return
        if delivery.tries < self.attempts:
            delay = self.backoff_seconds * (2 ** (delivery.tries - 1))
            heapq.heappush(self._due, (time.monotonic() + delay, next(self._order), delivery))
            return
        job_log(delivery.message.job_id).warning(
            "notification %r could not be sent to %s after %d tries: %s",
            delivery.message.event, contacted_host(delivery.url), delivery.tries, reason,
        )


# ---------------------------------------------------------------------------
# the service's one sender, and the events


_sender: Sender | None = None


def start(settings: "Settings") -> Sender | None:
    """The sender for this service, or None when no notification is configured."""
    global _sender
    if not all_urls(settings):
        return None
    _sender = Sender(settings.notify.attempts, settings.notify.retry_backoff_seconds)
    hosts = ", ".join(dict.fromkeys(contacted_host(u) for u in all_urls(settings)))
    log().info("notifications go to: %s", hosts)
    return _sender


def stop(timeout: float = FLUSH_SECONDS) -> None:
    global _sender
    sender, _sender = _sender, None
    if sender is not None:
        sender.close(timeout)


def _emit(event: str, settings: "Settings", profile: str | None, job_id: int | None, build) -> None:
    """Build and queue one event's message; a mistake here is logged, never raised into a job."""
    sender = _sender
    if sender is None:
        return
    try:
        route = route_for(settings, profile)
        if not route.wants(event):
            return
        title, body = build()
        sender.send(Message(event, title, body, tuple(route.urls), job_id))
    except Exception:
        job_log(job_id).exception("notification %r not sent: it could not be written", event)


def job_done(settings: "Settings", row: "JobRow", job: "Job") -> None:
    """A job's outputs are committed. Not told for an API request's job: its client is waiting
    for the answer itself (a quarantine or a wait is still told)."""
    if _sender is not None:
        _sender.problems_solved()
    if row.request_id is not None:
        return
    _emit("done", settings, row.profile, row.id, lambda: done_message(settings, row, job))


def job_quarantined(settings: "Settings", row: "JobRow", stage: str, reason: str) -> None:
    _emit("quarantined", settings, row.profile, row.id, lambda: quarantined_message(settings, row, stage, reason))


def job_waiting(settings: "Settings", row: "JobRow", stage: str, problem: str) -> None:
    """A job starts waiting out an environment fault; told once per problem (see the module's doc)."""
    sender = _sender
    if sender is None or not route_for(settings, row.profile).wants("waiting"):
        return
    from hushdrop.pipeline.watch.finish import without_own_paths

    if sender.first_of_problem((stage, without_own_paths(problem, settings))):
        _emit("waiting", settings, row.profile, row.id, lambda: waiting_message(settings, row, stage, problem))


def service_stopped(settings: "Settings", reason: str) -> None:
    """The service stops on an error: to every URL that any route sends ``stopped`` to."""
    sender = _sender
    if sender is None:
        return
    urls = all_urls(settings, "stopped")
    if urls:
        title, body = stopped_message(reason)
        sender.send(Message("stopped", title, body, tuple(urls)))
