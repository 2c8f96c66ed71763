"""The watcher notices files in the inbox and hands settled ones to intake. Nothing more.

One watchdog observer watches the inbox root (profiles are its subfolders):
inotify where the filesystem delivers events, a ``PollingObserver`` where it does
not (NFS, SMB/CIFS, FUSE, 9p/drvfs bind mounts on WSL2). ``watch: auto`` decides by
the inbox's filesystem type and by a marker-file probe. Created, modified and
moved-into-place events (Syncthing's ``.syncthing.NAME.tmp`` → ``NAME``) all just
put the path on the candidate list; ``rescan()`` (at start, and on the
scheduler's clock) lists every profile folder so a missed event costs one rescan
period at worst.

A candidate is handed on only once its device, inode, size and mtime have stayed
the same for the profile's settle period, so a file still being copied (slowly,
over SMB) is never read early; one whose header declares more bytes than it has
waits up to the profile's ``incomplete_grace_seconds``. Links, FIFOs, sockets,
devices, directories, hard-linked files and files with other extensions are
reported once and left alone; so is a file intake refused (unreadable), until it
changes. A profile folder that is a symbolic link is never listed or taken from.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from hushdrop.pipeline.config import Profile, Settings
from hushdrop.pipeline.audio.containers import is_incomplete
from hushdrop.pipeline.fsutil import random_name
from hushdrop.pipeline.watch.intake import InboxUnsafe, classify, file_identity, opened_profile_folder, profile_folder
from hushdrop.pipeline.logs import log

# Filesystems on which inotify does not see changes made by other machines.
NO_EVENT_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "drvfs", "v9fs", "ceph", "glusterfs", "afs", "lustre", "davfs")

# on_settled(path, profile, stat) -> one of the outcomes below
TAKEN = "taken"  # dealt with
BUSY = "busy"  # not now (backpressure): try again on a later tick
CHANGED = "changed"  # it changed under the claim: settle again
REFUSED = "refused"  # stays in the inbox, reported; considered again only once it changes
BLOCKED = "blocked"  # the folder cannot be claimed from (environment): back off
Settled = Callable[[Path, Profile, os.stat_result], str]


def filesystem_type(path: Path) -> str:
    """The type of the filesystem ``path`` lives on, from /proc/self/mounts ('' if unknown)."""
    try:
        target = os.path.realpath(path)
        best, kind = "", ""
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mount = parts[1].replace("\\040", " ")
                if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
                    best, kind = mount, parts[2]
        return kind
    except OSError:
        return ""


PROBE_TEXT = b"hushdrop probe\n"


def remove_probe_markers(folder: Path) -> int:
    """Remove the marker files an interrupted probe left: only regular files with hushdrop's
    marker name and content, so nobody else's file (or folder) is ever taken for one."""
    removed = 0
    if not folder.is_dir():
        return removed
    for path in folder.glob(".hushdrop-probe-*"):
        try:
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_size == len(PROBE_TEXT) and path.read_bytes() == PROBE_TEXT:
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def events_work(folder: Path, timeout: float = 2.0) -> bool:
    """Probe: does an inotify observer on ``folder`` see a marker file we create?"""
    seen = threading.Event()
    marker = folder / f".hushdrop-probe-{random_name(8)}"

    class Probe(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if Path(os.fsdecode(event.src_path)) == marker:
                seen.set()

    observer = Observer()
    try:
        observer.schedule(Probe(), str(folder), recursive=False)
        observer.start()
    except OSError as exc:  # no inotify (limit reached, unsupported filesystem)
        log().warning("inotify is not available for %s (%s)", folder, exc)
        return False
    try:
        try:
            marker.write_bytes(PROBE_TEXT)
        except OSError as exc:  # a read-only inbox: claims will be refused loudly; events still arrive
            log().warning("cannot write a probe file in %s (%s); assuming inotify works", folder, exc.strerror)
            return True
        return seen.wait(timeout)
    finally:
        marker.unlink(missing_ok=True)
        observer.stop()
        observer.join(5)


def choose_mode(settings: Settings) -> tuple[str, str]:
    """('events' | 'polling', why)."""
    if settings.watch != "auto":
        return settings.watch, "set in the config"
    kind = filesystem_type(settings.inbox)
    if kind.startswith("fuse") or kind in NO_EVENT_FILESYSTEMS:
        return "polling", f"the inbox is on {kind}, which does not deliver change events"
    if not events_work(settings.inbox):
        return "polling", "a marker file in the inbox produced no event"
    return "events", f"inotify works on {kind or 'this filesystem'}"


@dataclass
class _Candidate:
    profile: Profile
    identity: tuple[int, int, int, int] | None
    still_since: float
    incomplete_reported: bool = False
    priority: int = 0  # a placed upload's (``Priority``): taken at once, before the folder's files


def _refusal_key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What must change (content, or permissions via ctime) before a refused file is looked at again."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: "Watcher"):
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("created", "modified", "closed"):
            path = Path(os.fsdecode(event.src_path))
        elif event.event_type == "moved":
            path = Path(os.fsdecode(event.dest_path))
        else:
            return
        self.watcher.heard(path)
        self.watcher.note(path)


class Watcher:
    """Turns inbox changes into settled files for ``on_settled``; keeps no state that must survive."""

    TICK = 0.2
    # how often, with events, the profile folders are compared with what the events said
    EVENT_CHECK_SECONDS = 5.0

    def __init__(self, settings: Settings, on_settled: Settled, once: bool = False,
                 placed_priority: Callable[[Path, os.stat_result], int] = lambda path, st: 0):
        self.settings = settings
        self.on_settled = on_settled
        # an upload the page or the API renamed into place whole (its note in the ledger): its
        # priority, 0 for any other file; such a file needs no settle period and goes first
        self.placed_priority = placed_priority
        self.once = once  # `hushdrop watch --once`: the files are complete, do not wait to settle
        self.mode = ""
        self._candidates: dict[Path, _Candidate] = {}
        self._reported: dict[Path, str] = {}  # left alone, and why (reported once)
        self._refused: dict[Path, tuple[int, int, int, int, int]] = {}
        self._unsafe: dict[str, str] = {}  # profile name → why its folder is not used
        self._blocked_until: dict[str, float] = {}  # profile name → monotonic time
        self._block_delay: dict[str, float] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._observer = None
        self._thread: threading.Thread | None = None
        self.paused = False  # True while intake refuses work (backpressure)
        self._heard: set[Path] = set()  # paths events reported since the last check_events
        self._listings: dict[str, tuple[tuple[int, int], frozenset[str]]] = {}  # profile → ((inode, mtime), names)
        self._next_event_check = 0.0
        self._missed_checks = 0
        self._block_reason: dict[str, str] = {}

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        self.settings.inbox.mkdir(parents=True, exist_ok=True)
        for profile in self.settings.profiles.values():
            folder = profile_folder(self.settings, profile)
            if not os.path.lexists(folder):
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    log().error("cannot create the folder of profile %s, %s: %s", profile.name, folder, exc.strerror)
        remove_probe_markers(self.settings.inbox)
        self.mode, why = choose_mode(self.settings)
        self._start_observer()
        log().info("watching %s with %s (%s)", self.settings.inbox, self.mode, why)
        self.rescan()
        self._thread = threading.Thread(target=self._settle_loop, name="settle", daemon=True)
        self._thread.start()

    def _start_observer(self) -> None:
        if self.mode == "polling":
            self._observer = PollingObserver(timeout=self.settings.poll_seconds)
        else:
            self._observer = Observer()
        self._observer.schedule(_Handler(self), str(self.settings.inbox), recursive=True)
        self._observer.start()

    def _restart_observer(self, why: str) -> None:
        log().error("the inbox's change events stopped (%s): restarting the observer and listing every folder", why)
        old = self._observer
        if old is not None:
            old.stop()
            old.join(10)
        self._start_observer()
        self.rescan()

    def heard(self, path: Path) -> None:
        """The observer reported ``path`` (the event handler calls this)."""
        with self._lock:
            self._heard.add(path)

    def check_events(self) -> None:
        """With events, make sure every name that appeared in a profile folder was reported.

        A folder whose inode or mtime moved on is listed (names only), and each name new since
        the last check that no event reported is taken up here: an inotify queue overflow, or a
        watch lost while a folder was renamed away and back, then costs seconds instead of a
        rescan period. When that happens at three checks in a row, or the observer's thread has
        ended, the observer is started anew and every folder listed.
        """
        if self.mode != "events" or self._observer is None or self._stop.is_set():
            return
        if not self._observer.is_alive() or not all(e.is_alive() for e in self._observer.emitters):
            self._restart_observer("its thread has ended")
            return
        with self._lock:
            heard, self._heard = self._heard, set()
        unheard: list[Path] = []
        for profile in self.settings.profiles.values():
            folder = profile_folder(self.settings, profile)
            st = _lstat(folder)
            if st is None:
                continue
            last = self._listings.get(profile.name)
            if last is not None and last[0] == (st.st_ino, st.st_mtime_ns):
                continue
            try:
                with opened_profile_folder(self.settings, profile) as fd:
                    names = frozenset(os.listdir(fd))
            except (InboxUnsafe, OSError):
                continue
            self._listings[profile.name] = ((st.st_ino, st.st_mtime_ns), names)
            if last is not None:
                unheard += [folder / name for name in sorted(names - last[1]) if folder / name not in heard]
        if not unheard:
            self._missed_checks = 0
            return
        self._missed_checks += 1
        if self._missed_checks >= 3:
            self._missed_checks = 0
            self._restart_observer(f"{len(unheard)} new file(s) came with no change event three checks in a row")
            return
        log().warning("%d new file(s) in the inbox came with no change event (e.g. %s); taking them up now",
                      len(unheard), unheard[0].name)
        for path in unheard:
            self.note(path)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(10)
        if self._thread is not None:
            self._thread.join(10)

    # -- input ---------------------------------------------------------------------

    def problems(self) -> list[dict[str, str]]:
        """What intake is leaving alone right now and why, for ``hushdrop status``."""
        found = [{"path": str(profile_folder(self.settings, self.settings.profiles[name])), "reason": why}
                 for name, why in self._unsafe.items()]
        now = time.monotonic()
        found += [{"path": str(profile_folder(self.settings, self.settings.profiles[name])),
                   "reason": f"intake paused (next try in {max(0.0, until - now):.0f} s): {self._block_reason.get(name, '')}"}
                  for name, until in self._blocked_until.items()]
        found += [{"path": str(path), "reason": why} for path, why in list(self._reported.items())[:50]]
        return found

    def refuse(self, path: Path, st: os.stat_result) -> None:
        """Intake would not take ``path`` as it is: leave it until it changes."""
        self._refused[path] = _refusal_key(st)
        self._drop(path)

    def block(self, profile: Profile, reason: str) -> None:
        """The profile's folder cannot be claimed from (an environment fault): back off, loudly."""
        delay = min(300.0, self._block_delay.get(profile.name, 0.5) * 2)
        self._block_delay[profile.name] = delay
        self._blocked_until[profile.name] = time.monotonic() + delay
        self._block_reason[profile.name] = reason
        log().error("cannot take files for profile %s: %s — trying again in %.0f s", profile.name, reason, delay)

    def _unblock(self, profile: Profile) -> None:
        if self._block_delay.pop(profile.name, None) is not None:
            self._blocked_until.pop(profile.name, None)
            log().info("profile %s takes files again", profile.name)

    def note(self, path: Path) -> None:
        """Something happened at ``path``: consider it (cheap; called from the observer thread)."""
        st = _lstat(path)
        verdict = classify(self.settings, path, st=st)
        if verdict.profile is None:
            return
        if st is not None and self._refused.get(path) == _refusal_key(st):
            return
        if not verdict.take:
            if verdict.reason and path not in self._reported and os.path.lexists(path):
                self._reported[path] = verdict.reason
                log().warning("leaving %s alone: %s", path, verdict.reason)
            return
        with self._lock:
            if path not in self._candidates:
                self._candidates[path] = _Candidate(verdict.profile, None, time.monotonic())
        self._wake.set()

    def rescan(self) -> None:
        """List every profile folder; catches anything an event did not report."""
        present: set[Path] = set()
        for profile in self.settings.profiles.values():
            folder = profile_folder(self.settings, profile)
            try:
                with opened_profile_folder(self.settings, profile) as fd, os.scandir(fd) as entries:
                    names = [entry.name for entry in entries]
            except InboxUnsafe as exc:
                if self._unsafe.get(profile.name) != str(exc):
                    log().error("not taking files for profile %s: %s", profile.name, exc)
                self._unsafe[profile.name] = str(exc)
                continue
            except OSError:
                continue
            self._unsafe.pop(profile.name, None)
            present.update(folder / name for name in names)
        for path in sorted(present):
            self.note(path)
        # forget what is gone, so memory stays flat however many files pass through
        for path in [p for p in self._reported if p not in present]:
            self._reported.pop(path, None)
        for path in [p for p in self._refused if p not in present]:
            self._refused.pop(path, None)
        with self._lock:
            for path in [p for p in self._candidates if p not in present]:
                self._candidates.pop(path, None)

    def pending(self) -> int:
        with self._lock:
            return len(self._candidates)

    # -- the settle check -------------------------------------------------------------

    def _settle_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.TICK)
            self._wake.clear()
            try:
                if time.monotonic() >= self._next_event_check:
                    self._next_event_check = time.monotonic() + self.EVENT_CHECK_SECONDS
                    self.check_events()
                self._settle_once()
            except Exception:  # never let one bad path stop the watcher
                log().exception("settle check failed; will try again")
                time.sleep(1)

    def _settle_once(self) -> None:
        now = time.monotonic()
        with self._lock:
            items = list(self._candidates.items())
        ready: list[tuple[Path, _Candidate, os.stat_result]] = []
        for path, cand in items:
            st = _lstat(path)
            if st is None:
                self._drop(path)
                continue
            verdict = classify(self.settings, path, st)
            if not verdict.take:
                self._drop(path)
                self.note(path)  # reports it once
                continue
            if self._refused.get(path) == _refusal_key(st) or self._blocked_until.get(cand.profile.name, 0) > now:
                continue
            identity = file_identity(st)
            if identity != cand.identity:
                cand.identity, cand.still_since = identity, now
                cand.priority = self.placed_priority(path, st)
                if not self.once and not cand.priority:
                    continue
            still = now - cand.still_since
            if not self.once and not cand.priority and still < cand.profile.settle_seconds:
                continue
            if not self.once and not cand.priority and still < cand.profile.incomplete_grace_seconds and _declares_more(path):
                if not cand.incomplete_reported:
                    cand.incomplete_reported = True
                    log().info("waiting for %s: its header declares more bytes than it has (still being written?)", path)
                continue
            ready.append((path, cand, st))
        for path, cand, st in sorted(ready, key=lambda item: (-item[1].priority, item[2].st_mtime_ns)):
            if self._stop.is_set():
                return
            if self._blocked_until.get(cand.profile.name, 0) > time.monotonic():
                continue
            outcome = self.on_settled(path, cand.profile, st)
            if outcome == BUSY:
                self.paused = True
                return  # backpressure: try again on a later tick
            self.paused = False
            if outcome == CHANGED:
                cand.identity, cand.still_since = None, time.monotonic()
            elif outcome == REFUSED:
                self.refuse(path, st)
            elif outcome == BLOCKED:
                cand.identity, cand.still_since = None, time.monotonic()
            else:
                self._unblock(cand.profile)
                self._drop(path)

    def _drop(self, path: Path) -> None:
        with self._lock:
            self._candidates.pop(path, None)


def _declares_more(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return False
    try:
        return is_incomplete(fd)
    except OSError:
        return False
    finally:
        os.close(fd)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None
