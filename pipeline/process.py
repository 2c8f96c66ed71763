"""One recording, start to finish: open it, run the profile's chain, commit outputs, retire the original.

``Processor`` is what one worker holds: a chain per profile, built and opened on
first use, so the model is loaded once per process and reused for every file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.audio import Audio, probe
from pipeline.config import Profile, Settings
from pipeline.errors import RejectedInput
from pipeline.fsutil import is_regular_file, private_tempdir
from pipeline.job import Job, ProgressCallback, _no_progress
from pipeline.outputs import commit_outputs
from pipeline.retention import apply_policy
from pipeline.runner import Chain


@dataclass
class Outcome:
    job: Job
    outputs: list[Path]
    retention: str
    seconds: float


class Processor:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._chains: dict[str, Chain] = {}

    def chain(self, profile: Profile) -> Chain:
        chain = self._chains.get(profile.name)
        if chain is None:
            chain = Chain([spec.build() for spec in profile.chain])
            chain.open()
            self._chains[profile.name] = chain
        return chain

    def close(self) -> None:
        for chain in self._chains.values():
            chain.close()
        self._chains.clear()

    def transcribe(self, path: Path, profile: Profile, progress: ProgressCallback = _no_progress) -> Job:
        """Run the chain on ``path``; the file itself is only read, never changed."""
        if path.is_symlink():
            raise RejectedInput("open", f"{path.name} is a symbolic link; hushdrop never follows links")
        if not is_regular_file(path):
            raise RejectedInput("open", f"{path.name} is not a regular file")
        job = Job(
            source=path,
            profile=profile.name,
            language=profile.language,
            glossary=list(profile.glossary),
            progress=progress,
        )
        job.facts = probe(path)
        limit = self.settings.max_duration_hours * 3600
        if job.facts.duration_s > limit:
            raise RejectedInput(
                "open",
                f"{path.name} is {job.facts.duration_s / 3600:.1f} h long, over the "
                f"max_duration_hours limit of {self.settings.max_duration_hours:g} h; raise the limit in "
                f"config.yaml or split the recording",
            )
        with private_tempdir(self.settings.tmp_root) as workdir:
            job.audio = Audio(source=path, workdir=workdir, source_rate=job.facts.sample_rate)
            try:
                self.chain(profile).run(job)
                self._check_truncation(job)
            finally:
                job.audio = None  # its memory maps point into workdir, which goes now
        return job

    @staticmethod
    def _check_truncation(job: Job) -> None:
        assert job.facts is not None and job.audio is not None
        decoded = job.audio.decoded_seconds
        if decoded is None:
            return
        job.facts.decoded_s = round(decoded, 3)
        declared = job.facts.duration_s
        if declared - decoded > max(1.0, 0.05 * declared):
            job.warn(
                f"the file looks truncated: its header says {declared:.1f} s but only {decoded:.1f} s "
                f"could be decoded; the transcript covers the readable part"
            )

    def process(
        self,
        path: Path,
        profile: Profile,
        progress: ProgressCallback = _no_progress,
        retire_original: bool = True,
    ) -> Outcome:
        started = time.perf_counter()
        job = self.transcribe(path, profile, progress)
        outputs = commit_outputs(job, self.settings.outbox / profile.name, profile.outputs)
        retention = apply_policy(path, profile.originals) if retire_original else f"kept {path}"
        return Outcome(job, outputs, retention, time.perf_counter() - started)
