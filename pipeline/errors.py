"""The few named errors hushdrop uses, each named for its effect.

- ``RejectedInput``: the recording itself is unusable (empty, not audio, no audio
  track). Retrying cannot help; the file goes to quarantine with the message.
- ``EnvironmentFault``: the machine, not the recording, is at fault (disk full, a
  read-only or vanished folder, a missing permission, an ffmpeg that lacks a filter
  or option, or crashes). The job waits and is retried with backoff, loudly; it is
  never quarantined as a bad recording for this (after ``environment_retry_hours``
  it is set aside in quarantine with a note that says the recording is fine).
- ``StageError``: a stage failed; carries the stage name. ``retryable`` says
  whether the executor should try again before quarantining.
- ``ConfigError``: the configuration is invalid; lists every problem with its path.
"""

from __future__ import annotations

import errno

# OSError numbers that mean the machine is at fault (disk full, read-only, permission, I/O,
# out of memory or file handles), never the recording
ENVIRONMENT_ERRNOS = frozenset({
    errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.ENOMEM, errno.EMFILE, errno.ENFILE,
})

# the stage that opening, probing and rendering a recording (pipeline.audio) is charged to:
# it has no Stage class, since audio is rendered lazily when a stage first needs samples
DECODE_STAGE = "decode"


class HushdropError(Exception):
    """Base class: every error hushdrop raises on purpose has a human message."""


class StageError(HushdropError):
    retryable = True

    def __init__(self, stage: str, message: str):
        self.stage = stage
        self.message = message
        super().__init__(f"{stage}: {message}")


class RejectedInput(StageError):
    """The input can never be processed as it is; do not retry."""

    retryable = False


class EnvironmentFault(StageError):
    """The environment failed (disk full, permissions, a broken tool): wait and retry, never blame the file."""

    retryable = True


class ConfigError(HushdropError):
    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid configuration in {source}:\n{listing}")


class ModelError(HushdropError):
    """A model is missing, corrupt or cannot be loaded."""
