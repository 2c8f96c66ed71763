"""`hushdrop models pull` from a local hub: wall time and peak memory, and `hushdrop models`' advice.

    python -m bench.models_pull            # 3 pulls of the bundled base (148 MB) under another name

The hub is the tests' local model hub (tests/modelhub.py) on loopback, serving the bundled Whisper
base as ``bench-org/whisper-base``; each pull goes into a fresh cache, so every run downloads,
hashes, verifies and renames the whole model. The time is the real CLI's, start to exit; the
memory is the pulling process's peak RSS (``ru_maxrss`` of the child). Loopback is not a network:
the figures say what hushdrop itself costs around a download, not how long one takes.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import REPO, RESULTS, machine
from hushdrop.pipeline.models import bundled_whisper_base
from tests.modelhub import LocalHub

REPO_ID = "bench-org/whisper-base"
NAME = "bench-base"


def pull_once(hub: LocalHub, root: Path) -> dict[str, float]:
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump({"models": {NAME: {"engine": "whisper", "repository": REPO_ID}},
                                      "profiles": {"default": {}}}))
    env = {**hub.environ(root / "hf-home"), "HUSHDROP_CACHE": str(root / "cache")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "hushdrop.pipeline.cli", "--config", str(config), "models", "pull", NAME],
        capture_output=True, text=True, env=env, cwd=REPO,
    )
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"pull failed:\n{proc.stdout}\n{proc.stderr}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"seconds": seconds, "peak_rss_mb": peak_kib / 1024 if peak_kib > before else float("nan")}


def main() -> None:
    folder = bundled_whisper_base()
    files = {name: folder / name for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")}
    size = sum(p.stat().st_size for p in files.values())
    runs = []
    with LocalHub({REPO_ID: files}) as hub:
        for i in range(3):
            with tempfile.TemporaryDirectory(prefix="bench-pull-") as tmp:
                runs.append(pull_once(hub, Path(tmp)))
                print(f"pull {i + 1}: {runs[-1]['seconds']:.2f} s, peak RSS {runs[-1]['peak_rss_mb']:.0f} MB", flush=True)
    advice = subprocess.run(
        [sys.executable, "-m", "hushdrop.pipeline.cli", "--config", str(REPO / "config.yaml"), "models"],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "COLUMNS": "200"},
    ).stdout
    recommendation = next((line for line in advice.splitlines() if line.startswith("recommended here")), "")
    result = {
        "machine": machine(),
        "model_bytes": size,
        "runs": runs,
        "median_seconds": statistics.median(r["seconds"] for r in runs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "recommendation": recommendation,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "models_pull.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
