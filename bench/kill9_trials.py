"""kill -9 the watcher at random moments while it works, many times; check nothing is lost or doubled.

Each trial drops new recordings (before and while the watcher runs), starts
``hushdrop watch``, kills it with SIGKILL after a random delay (during start-up,
intake, transcription, commit or shredding — wherever it happens to be), and then:

1. right after the kill: every recording dropped so far is either still waiting
   (byte-identical, in the inbox or the spool) or has a complete output set;
2. after recovery (the first thing ``hushdrop watch`` does on start, run here on its
   own so the check cannot race the next jobs): every recording is either waiting
   or done (complete outputs, original gone); no partial output set, no duplicate
   set ("name (2)"), no temp file, no temp audio, nothing quarantined.

After the last trial a final run drains everything and stops with SIGTERM; then
every recording must have exactly one complete output set and no original may remain.

    .venv/bin/python -m bench.kill9_trials --trials 25
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# the trials themselves live in the shared harness, which tests/integration/test_watch_slow.py also runs
from tests.harness import kill9_trials  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=25)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temp folder for inspection")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="hushdrop-kill9-"))
    report = kill9_trials(args.trials, root / "site", seed=args.seed)
    print(json.dumps(report.as_dict(), indent=2))
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"kept {root}")
    return 0 if not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())
