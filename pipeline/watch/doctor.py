"""``hushdrop doctor``: is this machine ready to run hushdrop, and the repair of a damaged ledger.

The checkup looks at what a job needs from its environment — the ffmpeg binary and
every filter the chains use, the model, each folder (there, a real folder, writable,
free space), the compute device and the ledger's integrity — and says for each what
is wrong and what to do.

``rebuild_ledger`` is the way back from a damaged ledger: the file (and its WAL) is
moved aside, never deleted, and a new ledger is built from the spool, where every
claimed-but-unfinished original waits in its own folder: each becomes a claimed job
again, with its hash and identity, and runs once more.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from hushdrop.pipeline.config import Settings
from hushdrop.pipeline.errors import EnvironmentFault
from hushdrop.pipeline.fsutil import can_change_folder, identity_of, sha256_file
from hushdrop.pipeline.watch.intake import InboxUnsafe, inbox_link_problem, opened_profile_folder, profile_folder
from hushdrop.pipeline.watch.ledger import Ledger, LedgerCorrupt, State

MIN_FREE_GB = 1.0


@dataclass
class Finding:
    topic: str
    ok: bool
    detail: str


def _folder_finding(topic: str, path: Path, need_write: bool = True) -> Finding:
    if os.path.islink(path):
        return Finding(topic, False, f"{path} is a symbolic link; name the real folder ({os.path.realpath(path)}) in the config")
    if not path.exists():
        return Finding(topic, True, f"{path} (created on first use)")
    if not path.is_dir():
        return Finding(topic, False, f"{path} is not a folder")
    if need_write and not can_change_folder(path):
        return Finding(topic, False, f"{path} is not writable by this user; fix its permissions or mount it read-write")
    free_gb = shutil.disk_usage(path).free / 1e9
    if free_gb < MIN_FREE_GB:
        return Finding(topic, False, f"{path}: only {free_gb:.2f} GB free; free some space (jobs wait while the disk is full)")
    return Finding(topic, True, f"{path} ({free_gb:.1f} GB free)")


def checkup(settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    try:
        from hushdrop.pipeline.ffmpeg_check import check_ffmpeg, describe_ffmpeg

        try:
            info = describe_ffmpeg(settings.ffmpeg, settings.source.parent)
        except EnvironmentFault as exc:
            findings.append(Finding("ffmpeg", False, exc.message))
        else:
            problems = check_ffmpeg(info.path)
            findings.append(Finding(
                "ffmpeg", not problems, "; ".join(problems) or f"{info.path} (version {info.version or '?'}, {info.origin})"
            ))
    except ImportError:
        pass
    from hushdrop.pipeline.engines import list_models
    from hushdrop.pipeline.engines.hub import profile_model_problems

    for status in list_models():
        if not status.optional:  # the bundled model; the others are checked where a profile names them
            findings.append(Finding(f"model {status.name}", status.ready, status.where if status.ready else status.detail))
    missing = profile_model_problems(settings)
    findings.append(Finding("profile models", not missing, "; ".join(missing) or "every model a profile names is here"))
    link = inbox_link_problem(settings)
    findings.append(Finding("inbox", link is None, link) if link else _folder_finding("inbox", settings.inbox))
    for profile in settings.profiles.values():
        if not profile.folder:
            continue
        try:
            with opened_profile_folder(settings, profile):
                findings.append(Finding(f"profile {profile.name}", True, str(profile_folder(settings, profile))))
        except InboxUnsafe as exc:
            missing = not os.path.lexists(profile_folder(settings, profile))
            findings.append(Finding(f"profile {profile.name}", missing, f"{exc}" + (" (created on first use)" if missing else "")))
    findings.append(_folder_finding("outbox", settings.outbox))
    findings.append(_folder_finding("workdir", settings.workdir))
    if settings.spool is not None:
        findings.append(_folder_finding("spool", settings.spool))
    findings.append(_device_finding())
    if settings.ledger_path.exists():
        try:
            ledger = Ledger(settings.ledger_path)
            ledger.close()
            findings.append(Finding("ledger", True, f"{settings.ledger_path} passes SQLite's integrity check"))
        except LedgerCorrupt as exc:
            findings.append(Finding("ledger", False, str(exc)))
    return findings


def _device_finding() -> Finding:
    try:
        import ctranslate2

        cuda = ctranslate2.get_cuda_device_count()
    except Exception:  # noqa: BLE001 - no CUDA runtime is a normal answer here
        cuda = 0
    if cuda:
        return Finding("device", True, f"{cuda} CUDA device(s) for the whisper engine")
    return Finding("device", True, f"CPU ({os.cpu_count()} cores); no CUDA device")


def rebuild_ledger(settings: Settings) -> str:
    """Move the ledger aside and rebuild it from the spool; returns what was done, for the user."""
    path = settings.ledger_path
    stamp = time.strftime("%Y%m%d-%H%M%S")
    moved = []
    for suffix in ("", "-wal", "-shm"):
        old = Path(f"{path}{suffix}")
        if old.exists():
            aside = Path(f"{path}{suffix}.damaged-{stamp}")
            os.rename(old, aside)
            moved.append(aside.name)
    ledger = Ledger(path)
    jobs = 0
    try:
        spool = settings.spool_dir
        for profile_dir in sorted(spool.iterdir()) if spool.is_dir() else ():
            if profile_dir.is_symlink() or not profile_dir.is_dir():
                continue
            for job_dir in sorted(profile_dir.iterdir()):
                if job_dir.is_symlink() or not job_dir.is_dir():
                    continue
                for original in job_dir.iterdir():
                    st = os.lstat(original)
                    if original.name.startswith(".") or not original.is_file() or original.is_symlink() or st.st_nlink != 1:
                        continue
                    device, inode = identity_of(st)
                    ledger.add(
                        profile=profile_dir.name, name=original.name, inbox_path=profile_folder(settings, profile_dir.name) / original.name,
                        spool_path=original, size=st.st_size, mtime_ns=st.st_mtime_ns, state=State.CLAIMED,
                        content_hash=sha256_file(original), device=device, inode=inode, claimed_at=time.time(),
                    )
                    jobs += 1
    finally:
        ledger.close()
    aside_text = f"moved the damaged ledger aside ({', '.join(moved)}); " if moved else ""
    return (
        f"{aside_text}rebuilt {path} with {jobs} job(s) found in the spool; they run when `hushdrop watch` "
        f"starts. Transcripts already in the outbox and files in quarantine are untouched."
    )
