"""RSS of the watcher process before and after 500 small files: it must stay flat.

The watcher (ledger, intake, settle tracker, scheduler) is measured on its own;
the worker process, which holds the model, is reported beside it.

    .venv/bin/python -m bench.watch_rss --files 500
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

# the measurement lives in the shared harness, which tests/integration/test_watch_slow.py also runs
from tests.harness import watcher_rss  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hushdrop-rss-") as tmp:
        result = watcher_rss(args.files, Path(tmp) / "site")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
