"""Reading recordings with ffmpeg: one module per job.

- ``containers``: what a file's container is, from its own first bytes (an allow-list), and
  how long its header says it is;
- ``binary``: which ffmpeg binary renders (bundled, system or a path);
- ``probe``: opening a recording as that file and nothing else, and what it contains
  (``AudioFacts``);
- ``failures``: whose fault a failed read or ffmpeg run is, the machine's
  (``EnvironmentFault``) or the recording's (``RejectedInput``);
- ``filters``: the ffmpeg filters stages contribute, and the command lines that run them;
- ``working``: the job's working ``Audio``, its pending filters rendered lazily in one
  ffmpeg run into a memory-mapped file, within the duration and disk bounds.

Whether a binary can run the whole chain is ``pipeline.ffmpeg_check``: it runs the stages'
own filters, so it sits above both this package and ``stages``.
"""

from hushdrop.pipeline.audio.binary import bundled_ffmpeg, ffmpeg_exe, fix_hint, resolve_ffmpeg
from hushdrop.pipeline.audio.containers import ALLOWED, Container, container_of, declared_size, is_incomplete
from hushdrop.pipeline.audio.failures import chain_problem, classify_failure, lost_output, meaningful_line, os_fault, tool_fault
from hushdrop.pipeline.audio.filters import (
    AudioFilter,
    Expressions,
    FilterExpression,
    PlainFilter,
    as_list,
    describe_filter,
    ffmpeg_args,
    filter_graph,
)
from hushdrop.pipeline.audio.probe import AudioFacts, demuxer_options, open_recording, plain_file, probe, pyav_reason
from hushdrop.pipeline.audio.working import Audio, RenderRecord, duration_text

__all__ = [
    "ALLOWED",
    "Audio",
    "AudioFacts",
    "AudioFilter",
    "Container",
    "Expressions",
    "FilterExpression",
    "PlainFilter",
    "RenderRecord",
    "as_list",
    "bundled_ffmpeg",
    "chain_problem",
    "classify_failure",
    "container_of",
    "declared_size",
    "demuxer_options",
    "describe_filter",
    "duration_text",
    "ffmpeg_args",
    "ffmpeg_exe",
    "filter_graph",
    "fix_hint",
    "is_incomplete",
    "lost_output",
    "meaningful_line",
    "open_recording",
    "os_fault",
    "plain_file",
    "probe",
    "pyav_reason",
    "resolve_ffmpeg",
    "tool_fault",
]
