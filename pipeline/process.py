"""One recording, start to finish: open it, run the profile's chain, commit outputs, dispose of the original.

The profile's Chinese ``script`` (:mod:`pipeline.script`) is applied once, at the end of
:meth:`Processor.run_chain`: what ``hushdrop run`` and every watch-mode worker call.

``Processor`` is what one worker holds: a chain per profile, built and opened on
first use, so the model is loaded once per process and reused for every file.
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from hushdrop.pipeline.audio import Audio, duration_text, probe, resolve_ffmpeg
from hushdrop.pipeline.config import OriginalsPolicy, Profile, Settings
from hushdrop.pipeline.audio.containers import declared_size
from hushdrop.pipeline.engines import catalogue
from hushdrop.pipeline.errors import EnvironmentFault, RejectedInput
from hushdrop.pipeline.fsutil import Identity, NotOurs, can_change_folder, check_sole_regular_file, identity_of, is_regular_file, private_tempdir
from hushdrop.pipeline.job import Job, ProgressCallback, no_progress
from hushdrop.pipeline.outputs import commit_outputs
from hushdrop.pipeline.peaks import waveform_of
from hushdrop.pipeline.retention import Action, Disposal, RetentionError, apply_policy
from hushdrop.pipeline.script import apply_script
from hushdrop.pipeline.chain import Chain


@dataclass
class Outcome:
    job: Job
    outputs: list[Path]
    original: Disposal  # what became of the recording
    seconds: float


class Processor:
    def __init__(self, settings: Settings):
        self.settings = settings
        # a spawned worker gets its settings, not the loading process's state: model names are
        # resolved in this config's catalogue, pinned by its models.lock
        catalogue.use(catalogue.for_settings(settings))
        self._chains: dict[str, Chain] = {}

    def chain(self, profile: Profile) -> Chain:
        chain = self._chains.get(profile.name)
        if chain is None:
            chain = Chain([spec.build() for spec in profile.chain])
            chain.open()
            self._chains[profile.name] = chain
        return chain

    def drop_chain(self, name: str) -> None:
        """Close profile ``name``'s chain; the next job of that profile builds it anew."""
        chain = self._chains.pop(name, None)
        if chain is not None:
            chain.close()

    def close(self) -> None:
        for chain in self._chains.values():
            chain.close()
        self._chains.clear()

    def run_chain(
        self, path: Path, profile: Profile, progress: ProgressCallback = no_progress, language: str | None = None,
        task: str | None = None, prompt: str | None = None,
    ) -> Job:
        """Run ``profile``'s whole chain on ``path`` and return the job; the file itself is only
        read, never changed, and nothing is written (outputs are the caller's: :meth:`process`,
        or watch mode's coordinator).

        ``language``, ``task``: this job's overrides of the profile's (an upload's or an API
        request's choice), or None; ``prompt``: words an API request adds to the profile's glossary.
        """
        if path.is_symlink():
            raise RejectedInput("open", f"{path.name} is a symbolic link; hushdrop never follows links")
        if not is_regular_file(path):
            raise RejectedInput("open", f"{path.name} is not a regular file")
        job = Job(
            source=path,
            profile=profile.name,
            language=language or profile.language,
            glossary=list(profile.glossary) + ([prompt] if prompt else []),
            task=task or profile.task,
            progress=progress,
        )
        job.facts = probe(path)
        limit = self.settings.max_duration_hours * 3600
        if job.facts.duration_s > limit:
            raise RejectedInput(
                "open",
                f"{path.name} is {duration_text(job.facts.duration_s)} long, over the "
                f"max_duration_hours limit of {duration_text(limit)}; raise the limit in "
                f"config.yaml or split the recording",
            )
        with self._tempdir() as workdir:
            # the limits hold for what the file decodes to, not only for what its header says
            job.audio = Audio(
                source=path,
                workdir=workdir,
                source_rate=job.facts.sample_rate,
                ffmpeg=resolve_ffmpeg(self.settings.ffmpeg, self.settings.source.parent),
                source_seconds=job.facts.duration_s,
                max_seconds=limit,
                max_temp_bytes=int(self.settings.max_temp_gb * 1e9),
            )
            try:
                self.chain(profile).run(job)
                apply_script(job, profile.script)  # a profile setting: once, whatever the chain
                self._check_truncation(job)
                job.waveform = waveform_of(job.audio)  # peaks for the web page; the audio itself is not kept
            finally:
                job.audio = None  # its memory maps point into workdir, which goes now
        return job

    @contextmanager
    def _tempdir(self) -> Iterator[Path]:
        """The job's private temp folder; failing to make one is the machine's fault, not the file's."""
        with ExitStack() as stack:
            try:
                workdir = stack.enter_context(private_tempdir(self.settings.tmp_root))
            except OSError as exc:
                raise EnvironmentFault(
                    "open", f"cannot create a private temp folder in {self.settings.tmp_root}: {exc.strerror or exc}"
                ) from exc
            yield workdir

    @staticmethod
    def _check_truncation(job: Job) -> None:
        assert job.facts is not None and job.audio is not None
        decoded = job.audio.decoded_seconds
        if decoded is None:
            return
        job.facts.decoded_s = round(decoded, 3)
        declared = job.facts.duration_s
        shorter_than_header = _shorter_than_header(job.source)
        if declared - decoded > max(1.0, 0.05 * declared) or shorter_than_header:
            job.warn(
                f"the file looks truncated: its header says {declared:.1f} s"
                + (f" ({shorter_than_header})" if shorter_than_header else "")
                + f" but only {decoded:.1f} s could be decoded; the transcript covers the readable part"
            )

    def process(
        self,
        path: Path,
        profile: Profile,
        progress: ProgressCallback = no_progress,
        originals: OriginalsPolicy | None = None,
    ) -> Outcome:
        """Transcribe ``path`` and commit its outputs; then apply ``originals`` (None: keep it).

        A policy that would change the file is checked before any work is done, and applied
        only to the very file that was transcribed (the same inode, still with one name).
        """
        started = time.perf_counter()
        received = time.time()
        identity = check_can_retire(path, originals)
        job = self.run_chain(path, profile, progress)
        job.received_at = received
        outputs = commit_outputs(
            job, self.settings.outbox / profile.name, profile.outputs, subtitle_names=profile.subtitle_names,
            mode=self.settings.output_mode_bits, group=self.settings.output_group,
        )
        original = apply_policy(path, originals, expect=identity) if originals else Disposal(Action.KEPT, path)
        return Outcome(job, outputs, original, time.perf_counter() - started)


def _shorter_than_header(path: Path) -> str | None:
    """'N of M bytes' when the container declares more bytes than the file has, else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        actual = os.fstat(fd).st_size
        declared = declared_size(fd, actual)
    finally:
        os.close(fd)
    if declared is not None and declared > actual:
        return f"{actual} of {declared} bytes"
    return None


def check_can_retire(path: Path, originals: OriginalsPolicy | None) -> Identity | None:
    """The file's identity; raises RetentionError now if ``originals`` could not be applied to it later."""
    try:
        st = os.lstat(path)
    except OSError:
        return None  # transcribe reports a missing file
    if originals is None or originals.action == "keep":
        return identity_of(st)
    try:
        check_sole_regular_file(st, path)
    except NotOurs as exc:
        raise RetentionError(f"will not {originals.action} {path}: {exc}; nothing was done") from None
    folder = path.parent
    if not can_change_folder(folder):
        raise RetentionError(
            f"will not {originals.action} {path}: its folder is not writable, so it could not be removed "
            f"afterwards; nothing was done (use --keep, or fix the folder's permissions)"
        )
    return identity_of(st)
