"""denoise: hushdrop's float32 spectral gate against the noisereduce call it replaced, side by side.

    python -m bench.denoise_speed                       # the gate alone, old and new alternating
    python -m bench.denoise_speed --call-sites          # + cheaper ways to call noisereduce itself
    python -m bench.denoise_speed --chain               # + the whole default chain, % of the engine
    python -m bench.denoise_speed --accuracy --snr 0,5,10 --languages en   # + WER, old vs new

Inputs are built at run time (never committed): ``--seconds`` of the held-out English clips
joined with 0.5 s gaps, with white noise at 0, 5 and 10 dB SNR (bench/noise.py), as the
stage sees them after ``resample`` (16 kHz mono); the 48 kHz rows feed the same speech,
resampled, to a stage that runs before ``resample`` (2048-point window). "old" is
noisereduce's own gate (``noisereduce_gate``, tests/stages/noisereduce_reference.py: the
``noisereduce.reduce_noise`` call the stage is held to), "new" the stage's ``spectral_gate``. One process; the two alternate on every repeat, so load on the shared
machine falls on both. Output agreement: SNR of new against old (old = signal), max |Δ|.

``--chain`` runs the `default` chain of config.yaml (bench.common.ChainSystem) on the 5 dB
file as 16 kHz mono and 48 kHz stereo WAV, alternating old and new (the stage's
``spectral_gate`` is swapped for the reference), and reports the stage's own seconds next to
``transcribe``'s. ``--accuracy`` transcribes every held-out clip of ``--languages`` under
white noise at ``--snr`` with old, new and "old + dither" in turn and scores each
(bench.common.score). The control: old's output plus seeded noise 138 dB below it, the size of
the difference between old and new; Whisper's words move with changes that small.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bench.common import SAMPLE_RATE, Counts, load_manifest, markdown_table, score
from tests.stages.noisereduce_reference import noisereduce_gate

SNRS = (0, 5, 10)


def agreement(reference: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """(SNR of ``other`` against ``reference`` in dB, max |difference|)."""
    ref = np.asarray(reference, dtype=np.float64)
    diff = ref - np.asarray(other, dtype=np.float64)
    err = float(np.sum(diff**2))
    snr = float("inf") if err == 0 else 10 * np.log10(float(np.sum(ref**2)) / err)
    return snr, float(np.max(np.abs(diff)))


def noisy_inputs(seconds: float) -> dict[int, np.ndarray]:
    from bench.noise import make_noise, mix
    from bench.overhead import speech

    base = speech(seconds)
    clip = load_manifest(["en"])[0]
    return {snr: mix(base, make_noise("white", clip, len(base), []), snr) for snr in SNRS}


def gate_only(seconds: float, repeats: int) -> str:
    from scipy.signal import resample_poly

    from hushdrop.stages.denoise import DenoiseOptions, noise_profile, spectral_gate, window_samples

    opts = DenoiseOptions()
    kw = dict(prop_decrease=opts.prop_decrease, threshold_std=opts.threshold_std,
              freq_smooth_hz=opts.freq_smooth_hz, time_smooth_ms=opts.time_smooth_ms)
    cases = []
    for snr, x in noisy_inputs(seconds).items():
        cases.append((f"white {snr} dB", "16 kHz", x, SAMPLE_RATE))
    five = noisy_inputs(seconds)[5]
    cases.append(("white 5 dB", "48 kHz", resample_poly(five.astype(np.float64), 3, 1).astype(np.float32), 48000))
    rows = []
    for label, fmt, x, rate in cases:
        noise = noise_profile(x, rate)
        n_fft = window_samples(opts.window_ms, rate)
        old_t, new_t = [], []
        noisereduce_gate(x[: rate * 2], rate, noise, n_fft=n_fft, **kw)  # imports, first-call set-up
        for _ in range(repeats):
            t = time.perf_counter()
            old = noisereduce_gate(x, rate, noise, n_fft=n_fft, **kw)
            old_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            new = spectral_gate(x, rate, noise, n_fft=n_fft, **kw)
            new_t.append(time.perf_counter() - t)
        snr, worst = agreement(old, new)
        o, n = statistics.median(old_t), statistics.median(new_t)
        per_min = 60.0 / (len(x) / rate)
        rows.append([label, fmt, n_fft, f"{1000 * o * per_min:.0f}", f"{1000 * n * per_min:.0f}", f"{o / n:.1f}×",
                     f"{snr:.1f} dB", f"{worst:.1e}", f"{np.corrcoef(old, new)[0, 1]:.7f}"])
        print(label, fmt, [round(v, 3) for v in old_t], [round(v, 3) for v in new_t], flush=True)
    return markdown_table(["input", "rate", "n_fft", "old ms/min audio", "new ms/min audio", "old ÷ new",
                           "new vs old SNR", "max |Δ|", "correlation"], rows)


def call_sites(seconds: float, repeats: int) -> str:
    """Cheaper ways to call noisereduce itself, each against the call the stage made (16 kHz, 5 dB)."""
    import noisereduce

    from hushdrop.stages.denoise import DenoiseOptions, noise_profile, spectral_gate

    x = noisy_inputs(seconds)[5]
    opts = DenoiseOptions()
    noise = noise_profile(x, SAMPLE_RATE)
    kw = dict(sr=SAMPLE_RATE, y_noise=noise, stationary=True, prop_decrease=opts.prop_decrease,
              n_std_thresh_stationary=opts.threshold_std, n_fft=512, freq_mask_smooth_hz=opts.freq_smooth_hz,
              time_mask_smooth_ms=opts.time_smooth_ms)
    variants = {
        "as shipped (float32 in, chunk_size 600000, n_jobs 1)": lambda: noisereduce_gate(x, SAMPLE_RATE, noise, n_fft=512),
        "float64 in": lambda: noisereduce.reduce_noise(y=x.astype(np.float64), n_jobs=1, **kw).astype(np.float32),
        "chunk_size = whole block (one piece)": lambda: noisereduce.reduce_noise(y=x, chunk_size=len(x), n_jobs=1, **kw),
        "n_jobs 2 (joblib, 2 pieces in parallel)": lambda: noisereduce.reduce_noise(y=x, n_jobs=2, **kw),
        "n_jobs 2, chunk_size 300000": lambda: noisereduce.reduce_noise(y=x, n_jobs=2, chunk_size=300_000, **kw),
        "hushdrop spectral_gate (new)": lambda: spectral_gate(x, SAMPLE_RATE, noise, n_fft=512),
    }
    times: dict = {k: [] for k in variants}
    outs = {}
    for f in variants.values():
        f()  # imports, joblib workers
    for _ in range(repeats):
        for name, f in variants.items():
            t = time.perf_counter()
            outs[name] = f()
            times[name].append(time.perf_counter() - t)
    ref_name = next(iter(variants))
    base = statistics.median(times[ref_name])
    rows = []
    for name in variants:
        t = statistics.median(times[name])
        snr, worst = agreement(outs[ref_name], outs[name])
        rows.append([name, f"{1000 * t * 60 / seconds:.0f}", f"{t / base:.2f}", f"{snr:.1f} dB", f"{worst:.1e}"])
    return markdown_table(["call (white 5 dB, 16 kHz)", "ms per min of audio", "÷ as shipped", "SNR vs as shipped",
                           "max |Δ|"], rows)


@contextmanager
def reference_gate(on: bool, dither_db: float | None = None):
    """Make the stage call noisereduce (the old path) while ``on``; with ``dither_db``, add seeded
    Gaussian noise that far below the output's RMS to it (a control of the same size as the
    difference between old and new)."""
    import hushdrop.stages.denoise as denoise

    fast = denoise.spectral_gate

    def reference(samples, rate, noise, *, out=None, progress=None, **kw):
        gated = noisereduce_gate(samples, rate, noise, **kw)
        if dither_db is not None:
            rms = float(np.sqrt(np.mean(np.square(gated, dtype=np.float64))))
            rng = np.random.default_rng(len(gated))
            gated = (gated + rng.standard_normal(len(gated)) * rms * 10 ** (-dither_db / 20)).astype(np.float32)
        if out is None:
            return gated
        out[:] = gated
        if progress is not None:
            progress(1.0)
        return out

    if on:
        denoise.spectral_gate = reference
    try:
        yield
    finally:
        denoise.spectral_gate = fast


def chain(seconds: float, repeats: int) -> str:
    from bench.common import ChainSystem
    from bench.overhead import write

    x = noisy_inputs(seconds)[5]
    rows = []
    with tempfile.TemporaryDirectory(prefix="hushdrop-denoise-") as tmp:
        files = {}
        for fmt in ("16k-mono", "48k-stereo"):
            files[fmt] = Path(tmp) / f"white5-{fmt}.wav"
            write(files[fmt], x, fmt)
        system = ChainSystem()
        system.warm_up()
        runs: dict = {}
        for _ in range(repeats):
            for fmt, path in files.items():
                for variant in ("old", "new"):
                    with reference_gate(variant == "old"):
                        hyp = system.transcribe(path)
                    assert any("gating noise" in n for n in hyp.notes), hyp.notes
                    runs.setdefault((fmt, variant), []).append(hyp.stages)
                    print(fmt, variant, {k: round(v, 3) for k, v in hyp.stages.items()}, flush=True)
        system.close()
    for (fmt, variant), stages in runs.items():
        den = [s["denoise"] for s in stages]
        eng = [s["transcribe"] for s in stages]
        share = [d / e for d, e in zip(den, eng)]
        rows.append([fmt, variant, " / ".join(f"{1000 * d:.0f}" for d in den), " / ".join(f"{e:.2f}" for e in eng),
                     f"{100 * statistics.median(share):.2f} %"])
    return markdown_table(["input (white 5 dB)", "denoise", "denoise ms (each run)", "transcribe s (each run)",
                           "denoise ÷ transcribe (median)"], rows)


def accuracy(languages: list[str] | None, snrs: list[int]) -> str:
    """WER/CER with old, new, and old with a dither as far below it as new is from it (138 dB, the
    agreement on these recordings): the control for how much a change that small moves Whisper."""
    from bench.common import ChainSystem
    from bench.noise import Condition, noisy_file

    everyone = load_manifest()
    clips = load_manifest(languages)
    system = ChainSystem()
    system.warm_up()
    variants = ("old", "new", "old + dither")
    totals: dict = {}
    new_same = {snr: 0 for snr in snrs}
    old_same = {snr: 0 for snr in snrs}
    gated = {snr: 0 for snr in snrs}
    with tempfile.TemporaryDirectory(prefix="hushdrop-noisy-") as tmp:
        for snr in snrs:
            cond = Condition("white", snr)
            for clip in clips:
                path = noisy_file(clip, cond, everyone, Path(tmp))
                texts = {}
                for variant in variants:
                    with reference_gate(variant != "new", 138.0 if variant == "old + dither" else None):
                        hyp = system.transcribe(path)
                    texts[variant] = hyp.text
                    c = score(clip.reference, hyp.text, clip.language, clip.duration_s)
                    totals.setdefault((clip.language, snr, variant), Counts()).__iadd__(c)
                gated[snr] += any("gating noise" in n for n in hyp.notes)
                new_same[snr] += texts["old"] == texts["new"]
                old_same[snr] += texts["old"] == texts["old + dither"]
                print(f"white {snr:+d} dB {clip.id:<50} old=new {texts['old'] == texts['new']}  "
                      f"old=dithered {texts['old'] == texts['old + dither']}", flush=True)
    system.close()
    rows = []
    for lang in sorted({k[0] for k in totals}):
        for snr in snrs:
            old, new, again = (totals[(lang, snr, v)] for v in variants)
            rows.append([lang, f"white {snr} dB", old.clips, f"{gated[snr]}/{old.clips}", f"{old.rate:.2f}",
                         f"{new.rate:.2f}", f"{again.rate:.2f}", f"{new.rate - old.rate:+.2f}",
                         f"{new_same[snr]}/{old.clips}", f"{old_same[snr]}/{old.clips}"])
    return markdown_table(["language", "condition", "clips", "gated", "old %", "new %", "old + dither %", "new − old",
                           "same text: old, new", "same text: old, old + dither"], rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--repeats", type=int, default=5, help="alternations of old and new (gate alone)")
    p.add_argument("--call-sites", action="store_true", help="also time cheaper noisereduce calls")
    p.add_argument("--chain", action="store_true", help="also time the stage inside the default chain")
    p.add_argument("--chain-repeats", type=int, default=2)
    p.add_argument("--accuracy", action="store_true", help="also compare WER/CER of old and new")
    p.add_argument("--languages", default="en")
    p.add_argument("--snr", default="0,5,10")
    args = p.parse_args(argv)
    parts = ["gate alone (one process, old and new alternating, medians):", "", gate_only(args.seconds, args.repeats)]
    if args.call_sites:
        parts += ["", "noisereduce call sites (one process, alternating, medians):", "", call_sites(args.seconds, args.repeats)]
    if args.chain:
        parts += ["", "inside the default chain:", "", chain(args.seconds, args.chain_repeats)]
    if args.accuracy:
        langs = [x for x in args.languages.split(",") if x] or None
        parts += ["", "accuracy, white noise:", "", accuracy(langs, [int(s) for s in args.snr.split(",") if s])]
    print("\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
