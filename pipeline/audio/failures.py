"""Whose fault a failed read or ffmpeg run is: the machine's or the recording's.

A failure is charged to whoever caused it. A full or read-only disk, a missing permission,
an ffmpeg that crashes or lacks one of our filters or options is an ``EnvironmentFault``:
the job waits and is tried again. A recording ffmpeg cannot decode is a ``RejectedInput``.
Either message quotes the line in which ffmpeg names the error.
"""

from __future__ import annotations

import errno
import re
import signal
import subprocess
from pathlib import Path

from hushdrop.pipeline.audio.binary import fix_hint
from hushdrop.pipeline.audio.filters import FilterExpression, ffmpeg_args
from hushdrop.pipeline.errors import DECODE_STAGE, EnvironmentFault, RejectedInput, StageError

_ERRNO_HINTS = {
    errno.ENOSPC: "the disk is full: free some space there (the job waits and tries again)",
    errno.EDQUOT: "the disk quota is used up: free some space there (the job waits and tries again)",
    errno.EROFS: "that filesystem is read-only: point `workdir` at a writable folder, or remount it",
    errno.EACCES: "hushdrop's user lacks the permission: check the owner and mode of the file and of `workdir`",
    errno.EPERM: "hushdrop's user lacks the permission: check the owner and mode of the file and of `workdir`",
    errno.EIO: "the disk or network share reported an I/O error: check it",
    errno.ENOMEM: "the machine ran out of memory: try fewer workers",
    errno.EMFILE: "the process ran out of file handles: raise its limit (ulimit -n) or run fewer workers",
    errno.ENFILE: "the system ran out of file handles: raise its limit or run fewer workers",
}


def os_fault(exc: OSError, what: str) -> EnvironmentFault:
    """An error of the machine (our folders, the disk, the share) as an EnvironmentFault."""
    hint = _ERRNO_HINTS.get(exc.errno or 0, "the recording is not at fault; the job waits and tries again")
    return EnvironmentFault(DECODE_STAGE, f"{what}: {exc.strerror or exc}; {hint}")


# ffmpeg's own words for a machine fault, and what to do about it
_MACHINE_LINES = (
    (re.compile(r"No space left on device|Disk quota exceeded", re.I), errno.ENOSPC),
    (re.compile(r"Read-only file system", re.I), errno.EROFS),
    (re.compile(r"Permission denied|Operation not permitted", re.I), errno.EACCES),
    (re.compile(r"Cannot allocate memory|Out of memory", re.I), errno.ENOMEM),
    (re.compile(r"Input/output error", re.I), errno.EIO),
    (re.compile(r"Too many open files", re.I), errno.EMFILE),
)
# an ffmpeg that lacks what hushdrop asks of it, whatever the input
_TOOL_LINES = re.compile(
    r"Unrecognized option|No such filter|Option \S*\s*not found|Filter not found|Unknown encoder|Unknown input format|"
    r"Requested output format .* is not|Unable to find a suitable output format|Protocol not found",
    re.I,
)
# a recording ffmpeg cannot decode
_INPUT_LINES = re.compile(
    r"Invalid data found when processing input|could not find codec parameters|moov atom not found|"
    r"Error while decoding|decoding for stream \d+ failed|Invalid (?:frame|packet|sample|chunk|header)|"
    r"does not contain any stream|matches no streams|Header missing|invalid (?:sync|header|block)|corrupt|"
    r"truncat|End of file|partial file|not on whitelist|Decoder \(codec .*\) not found|"
    r"Error opening input|Unsupported codec",
    re.I,
)
_ERRORISH = re.compile(r"error|invalid|fail|cannot|could not|can't|not found|unable|no such|unsupported|unknown|corrupt", re.I)
_CONTEXT = re.compile(r"^\[([^\]@]+?) @ 0x[0-9a-f]+\]\s*", re.I)
_LOST_OUTPUT = re.compile(r"Error (?:writing trailer|closing file)", re.I)


def _error_lines(stderr: str) -> list[str]:
    """ffmpeg's messages, one per line, with the ``[demuxer @ 0x…]`` address dropped.

    Indented lines are left out: they are ffmpeg's dump of the input's streams and
    tags (a tag's text is the recording's, not ffmpeg's error).
    """
    lines = []
    for raw in stderr.splitlines():
        if not raw.strip() or raw[:1].isspace():
            continue
        line = _CONTEXT.sub(lambda m: m.group(1).strip() + ": ", raw.strip())
        lines.append(line[:240])
    return lines


def _first(lines: list[str], pattern: re.Pattern) -> str | None:
    return next((line for line in lines if pattern.search(line)), None)


def lost_output(stderr: str) -> bool:
    """Whether ffmpeg failed to write its output although it exited with status 0 (some
    versions do when the last write, at the trailer, hits a full disk)."""
    lines = _error_lines(stderr)
    return any(_first(lines, pattern) for pattern, _ in _MACHINE_LINES) or _first(lines, _LOST_OUTPUT) is not None


def meaningful_line(stderr: str) -> str:
    """The first line in which ffmpeg names an error, else its last line."""
    lines = _error_lines(stderr)
    for pattern in (*(p for p, _ in _MACHINE_LINES), _TOOL_LINES, _INPUT_LINES, _ERRORISH):
        line = _first(lines, pattern)
        if line:
            return line
    return lines[-1] if lines else "ffmpeg said nothing"


def tool_fault(exe: str, line: str) -> EnvironmentFault:
    """The ffmpeg at ``exe`` lacks what hushdrop asks of it (``line``: ffmpeg's words)."""
    return EnvironmentFault(DECODE_STAGE, f"the ffmpeg at {exe} cannot run hushdrop's filters ({line}); {fix_hint(exe)}")


def classify_failure(
    exe: str,
    returncode: int,
    stderr: str,
    name: str,
    workdir: Path | None = None,
    chain: list[FilterExpression] | None = None,
    rate: int = 16000,
) -> StageError:
    """The error for an ffmpeg run that failed on the recording ``name``.

    A signal, a machine error or an option this ffmpeg lacks is an EnvironmentFault;
    a decoding error of the input a RejectedInput. When ffmpeg's words do not settle
    it, ``chain`` is run on a generated tone with the same binary: if our filters
    fail there too, the binary is at fault, otherwise the recording is.
    """
    lines = _error_lines(stderr)
    if returncode < 0:
        try:
            killed_by = signal.Signals(-returncode).name
        except ValueError:
            killed_by = f"signal {-returncode}"
        said = f" (its last words: {lines[-1]})" if lines else ""
        return EnvironmentFault(
            DECODE_STAGE,
            f"ffmpeg ({exe}) was killed by {killed_by} while decoding {name}{said}: it crashed, ran out of memory "
            f"or was stopped; the recording is not at fault and the job will be tried again",
        )
    for pattern, code in _MACHINE_LINES:
        line = _first(lines, pattern)
        if line:
            where = f" (temporary folder: {workdir.parent})" if workdir is not None and code in (errno.ENOSPC, errno.EROFS) else ""
            return EnvironmentFault(
                DECODE_STAGE,
                f"ffmpeg failed on {name} because of the machine, not the recording: {line}{where}; {_ERRNO_HINTS[code]}",
            )
    line = _first(lines, _TOOL_LINES)
    if line:
        return tool_fault(exe, line)
    line = _first(lines, _INPUT_LINES)
    if line is None and chain is not None:
        problem = chain_problem(exe, chain, rate)
        if problem is not None:
            return tool_fault(exe, problem)
    if line is None:
        line = meaningful_line(stderr) if lines else f"ffmpeg exited with status {returncode} and said nothing"
    return RejectedInput(DECODE_STAGE, f"ffmpeg could not decode {name}: {line}; check that it is a complete audio or video file")


_TEST_TONE = "sine=frequency=440:sample_rate=48000:duration=1"


def chain_problem(exe: str, chain: list[FilterExpression], rate: int = 16000, timeout: float = 60.0) -> str | None:
    """Run ``chain`` with ``exe`` on a generated one-second tone; ffmpeg's error line, or None if it works."""
    args = ffmpeg_args(_TEST_TONE, {"f": "lavfi"}, chain, "-", {"f": "null", "acodec": "pcm_f32le", "ac": 1, "ar": rate})
    cmd = [exe, "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", *args]
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"a one-second test render took over {timeout:g} s"
    except OSError as exc:
        return f"it cannot be run: {exc.strerror or exc}"
    if proc.returncode < 0:
        return f"it was killed by signal {-proc.returncode} on a one-second test render"
    if proc.returncode != 0:
        return meaningful_line(proc.stderr)
    return None


__all__ = ["chain_problem", "classify_failure", "lost_output", "meaningful_line", "os_fault", "tool_fault"]
