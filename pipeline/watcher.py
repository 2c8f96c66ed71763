"""``hushdrop watch``: a polling loop over the inbox.

Each poll lists the inbox root (the ``default`` profile) and each profile's
subfolder, skips what must never be touched (temp files of sync tools, hidden
files, links, FIFOs, devices), waits until a file's size and mtime have been
still for the profile's settle period, then processes it. A file whose job
fails is moved to the quarantine folder beside a ``.error.txt`` saying why.
"""

from __future__ import annotations

import fnmatch
import os
import signal
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from pipeline.config import Profile, Settings
from pipeline.errors import HushdropError, StageError
from pipeline.fsutil import fsync_dir, link_no_clobber, write_temp

# Temp and metadata files of sync tools, browsers and desktops: never ours to read.
BUILTIN_IGNORE = (
    ".*",  # dot-files: .syncthing.*.tmp, ._* (macOS), .DS_Store, .~lock* (Nextcloud/LibreOffice), .stfolder …
    "~syncthing~*",
    "*.tmp",
    "*.part",
    "*.partial",
    "*.crdownload",
    "*.download",
    "*.!sync",
    "@eaDir",
    "#recycle",
    "Thumbs.db",
    "desktop.ini",
    "*.error.txt",
)


def is_ignored(name: str, extra: list[str] | tuple[str, ...] = ()) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in (*BUILTIN_IGNORE, *extra))


@dataclass
class Seen:
    size: int
    mtime_ns: int
    still_since: float


def _candidates(settings: Settings) -> list[tuple[Path, Profile]]:
    found: list[tuple[Path, Profile]] = []
    for profile in settings.profiles.values():
        folder = settings.inbox / profile.folder if profile.folder else settings.inbox
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        for entry in entries:
            if is_ignored(entry.name, profile.ignore):
                continue
            if entry.is_dir(follow_symlinks=False):
                continue  # profile folders, or a directory that merely looks like a file
            found.append((Path(entry.path), profile))
    return found


def quarantine(settings: Settings, path: Path, profile: Profile, error: Exception) -> Path:
    """Move ``path`` into the quarantine folder beside an explanation; never shreds."""
    folder = settings.quarantine / profile.name
    folder.mkdir(parents=True, exist_ok=True)
    stage = error.stage if isinstance(error, StageError) else "unknown"
    message = getattr(error, "message", str(error))
    for n in range(1, 10_000):
        target = folder / (path.name if n == 1 else f"{path.stem} ({n}){path.suffix}")
        if not target.exists() and link_no_clobber(path, target):
            break
    if path.exists() and target.exists() and os.path.samefile(path, target):
        os.unlink(path)
    explanation = (
        f"hushdrop could not transcribe {path.name}\n\n"
        f"profile: {profile.name}\nstage:   {stage}\nreason:  {message}\n\n"
        f"The recording was not changed. Fix the problem (or convert the file) and move it\n"
        f"back into the inbox to try again.\n"
    )
    temp = write_temp(folder, explanation.encode())
    os.replace(temp, folder / f"{target.name}.error.txt")
    fsync_dir(folder)
    fsync_dir(path.parent)
    return target


def watch(settings: Settings, console: Console, once: bool = False) -> int:
    from pipeline.process import Processor

    settings.inbox.mkdir(parents=True, exist_ok=True)
    for profile in settings.profiles.values():
        if profile.folder:
            (settings.inbox / profile.folder).mkdir(parents=True, exist_ok=True)
    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        stopping = True
        console.print("stopping after the current file …")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    processor = Processor(settings)
    seen: dict[Path, Seen] = {}
    reported: set[Path] = set()
    console.print(f"watching {settings.inbox} (profiles: {', '.join(settings.profiles)}); Ctrl-C to stop")
    try:
        while not stopping:
            now = time.monotonic()
            ready: list[tuple[Path, Profile]] = []
            current = set()
            for path, profile in _candidates(settings):
                current.add(path)
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                if not stat.S_ISREG(st.st_mode):
                    if path not in reported:
                        console.print(f"[yellow]ignoring {path}: not a regular file (link, FIFO or device)[/]")
                        reported.add(path)
                    continue
                previous = seen.get(path)
                if previous is None or (previous.size, previous.mtime_ns) != (st.st_size, st.st_mtime_ns):
                    seen[path] = Seen(st.st_size, st.st_mtime_ns, now)
                if once or now - seen[path].still_since >= profile.settle_seconds:
                    ready.append((path, profile))
            for gone in set(seen) - current:
                seen.pop(gone, None)
            for path, profile in ready:
                if stopping:
                    break
                seen.pop(path, None)
                try:
                    outcome = processor.process(path, profile)
                    console.print(f"[green]✓[/] {path.name} → {outcome.outputs[0].parent} ({outcome.retention})")
                except (HushdropError, OSError) as exc:
                    target = quarantine(settings, path, profile, exc)
                    console.print(f"[red]✗ {path.name}[/]: {exc} → quarantined at {target}")
            if once:
                break
            time.sleep(settings.poll_seconds)
    finally:
        processor.close()
    return 0
