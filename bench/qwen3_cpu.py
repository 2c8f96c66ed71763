"""Qwen3-ASR on CPU at the true 0.6B shape (random weights): fp32, bf16 and int8 dynamic.

    python -m bench.qwen3_cpu --seconds 30 --tokens-per-second 4 --steps 1000

The model is bench/qwen3_throughput.py's config with seeded random weights (the hub is not
reachable from the machines that build hushdrop). For each compute type, in a fresh process:
real-time factor of ``generate`` on one input of ``--seconds`` (feature extraction included,
exactly ``tokens_per_second * seconds`` new tokens, greedy) and peak RSS. Then, in one
process, logits agreement with fp32 over ``--steps`` teacher-forced decoding steps (the same
audio and a seeded token sequence): max |Δlogit| and top-1 agreement.
int8 = ``torch.ao.quantization.quantize_dynamic`` on every ``nn.Linear`` (weights int8,
activations quantized per batch at run time).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

from bench.qwen3_throughput import IM_END, SAMPLE_RATE, build_config, prompt_ids

TYPES = ("fp32", "bf16", "int8")


def build(kind: str):
    import torch
    from transformers import Qwen3ASRForConditionalGeneration

    torch.manual_seed(0)
    model = Qwen3ASRForConditionalGeneration(build_config()).eval()
    model.generation_config.pad_token_id = IM_END
    if kind == "bf16":
        model = model.to(torch.bfloat16)
    elif kind == "int8":
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return model


def inputs(model, seconds: float, extra: list[int] | None = None):
    import torch
    from transformers import Qwen3ASRFeatureExtractor
    from transformers.models.qwen3_asr.modeling_qwen3_asr import _get_feat_extract_output_lengths

    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(int(seconds * SAMPLE_RATE)) * 0.1).astype(np.float32)
    f = Qwen3ASRFeatureExtractor()([audio], sampling_rate=SAMPLE_RATE, return_attention_mask=True)
    mask = f["attention_mask"]
    n = int(_get_feat_extract_output_lengths(mask.sum(-1))[0])
    ids = torch.tensor([prompt_ids(n) + (extra or [])])
    dtype = torch.bfloat16 if next(model.parameters()).dtype == torch.bfloat16 else torch.float32
    return dict(input_ids=ids, attention_mask=torch.ones_like(ids), input_features=f["input_features"].to(dtype),
                input_features_mask=mask)


def speed_worker(kind: str, seconds: float, tps: float, threads: int) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model = build(kind)
    load = time.perf_counter() - t0
    new = int(round(tps * seconds))
    with torch.inference_mode():
        model.generate(**inputs(model, 2.0), max_new_tokens=4, min_new_tokens=4, do_sample=False)  # warm-up
        start = time.perf_counter()
        model.generate(**inputs(model, seconds), max_new_tokens=new, min_new_tokens=new, do_sample=False)
        wall = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps({"kind": kind, "load_s": load, "wall_s": wall, "audio_s": seconds, "tokens": new,
                                  "peak_rss_mib": rss, "threads": torch.get_num_threads()}), flush=True)


def agreement(seconds: float, steps: int) -> list[dict]:
    import torch

    rng = np.random.default_rng(1)
    forced = rng.integers(0, 151000, size=steps).tolist()
    out = []
    ref_logits = None
    for kind in TYPES:
        model = build(kind)
        with torch.inference_mode():
            logits = model(**inputs(model, seconds, forced)).logits[0, -steps:].float()
        del model
        if ref_logits is None:
            ref_logits = logits
            continue
        diff = (logits - ref_logits).abs()
        out.append({"kind": kind, "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
                    "logit_scale": float(ref_logits.abs().max()),
                    "top1_agreement": float((logits.argmax(-1) == ref_logits.argmax(-1)).float().mean())})
        print(out[-1], flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--tokens-per-second", type=float, default=4.0)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--types", default=",".join(TYPES))
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--no-agreement", action="store_true")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        speed_worker(args.worker, args.seconds, args.tokens_per_second, args.threads)
        return 0
    rows = []
    for kind in args.types.split(","):
        cmd = [sys.executable, "-m", "bench.qwen3_cpu", "--worker", kind, "--seconds", str(args.seconds),
               "--tokens-per-second", str(args.tokens_per_second), "--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(f"{kind} failed:\n{proc.stderr[-2000:]}", flush=True)
            continue
        d = json.loads(line[7:])
        rows.append(d)
        print(f"{kind}: {d['wall_s']:.1f} s for {d['audio_s']:g} s (RTF {d['wall_s'] / d['audio_s']:.2f}), "
              f"{d['tokens'] / d['wall_s']:.1f} tokens/s incl. encoder, peak RSS {d['peak_rss_mib']:.0f} MiB, "
              f"load {d['load_s']:.1f} s", flush=True)
    agree = [] if args.no_agreement else agreement(args.seconds, args.steps)
    print(json.dumps({"speed": rows, "agreement": agree}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
