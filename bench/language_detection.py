"""language: auto, before and after hushdrop detects the language from the encoding it then reuses.

One process, the default chain, the English test clip cut to 10 s and 32 s; per length,
alternating 3 times: "old" (faster-whisper detects the language with its own encoder pass),
"new" (WhisperEngine._detect_language + EncodeOnce), and a forced `en`. Transcribe-stage
seconds (median), whether text and language agree, and how often an encoding was reused.

    .venv/bin/python -m bench.language_detection
"""

import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from tests.harness import speech_clip
from hushdrop.pipeline.config import load_config
from hushdrop.pipeline.process import Processor
settings = load_config(REPO / "config.yaml")
profile = settings.profile("default")
p = Processor(settings)
chain = p.chain(profile)
st = next(s for s in chain.stages if s.name == "transcribe")
eng = next(v for v in vars(st).values() if hasattr(v, "_detect_language"))
new = eng._detect_language
tmp = Path(tempfile.mkdtemp())
for secs in (10.0, 32.0):
    f = tmp / f"c{secs}.wav"; f.write_bytes(speech_clip(2, secs))
    p.run_chain(f, profile)
    out = {"old": [], "new": [], "en": []}; texts = {}
    for r in range(3):
        for mode in ("old", "new", "en"):
            eng._detect_language = new if mode == "new" else (lambda a: None)
            job = p.run_chain(f, profile, language="en" if mode == "en" else None)
            out[mode].append(next(s.seconds for s in job.stages if s.name == "transcribe"))
            texts.setdefault(mode, set()).add((job.transcript.text, job.transcript.language))
    m = {k: statistics.median(v) for k, v in out.items()}
    print(f"{secs:.0f} s: transcribe old {m['old']:.2f} new {m['new']:.2f} en {m['en']:.2f}; old/new {m['old']/m['new']:.2f}x; same text+lang old/new: {texts['old']==texts['new']} {[l for _, l in texts['new']]}")
print("reused", eng.model.encode.reused)
