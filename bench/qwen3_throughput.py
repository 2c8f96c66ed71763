"""GPU throughput of Qwen3-ASR at the true 0.6B shape, with random weights.

Builds ``Qwen3ASRForConditionalGeneration`` with the published 0.6B dimensions, bf16 on
CUDA, and decodes N two-minute inputs at several batch sizes. Random weights never
stop on their own, so every input generates exactly ``tokens_per_second * seconds``
tokens (min_new_tokens = max_new_tokens): a fixed, realistic amount of decoding
(~4 tokens per second of speech). Feature extraction is inside the timed region, as it
is in the engine.

    python bench/qwen3_throughput.py                 # needs a CUDA GPU
    python bench/qwen3_throughput.py --dry-run       # CPU: build the config, count parameters

Prints a markdown table: audio seconds per wall second and peak GPU memory per batch size.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16000

# Token ids of the published tokenizer; only their positions in the prompt matter here.
IM_START, IM_END, NEWLINE = 151644, 151645, 198
AUDIO_START, AUDIO_END, AUDIO_PAD = 151669, 151670, 151676
SYSTEM, USER, ASSISTANT = 8948, 872, 77091


def build_config():
    """Qwen3-ASR-0.6B: an 18-layer audio encoder and a 28-layer Qwen3 decoder."""
    from transformers import Qwen3ASRConfig

    return Qwen3ASRConfig(
        audio_config=dict(
            num_mel_bins=128,
            encoder_layers=18,
            encoder_attention_heads=14,
            encoder_ffn_dim=3584,
            d_model=896,
            output_dim=1024,
            downsample_hidden_size=480,
            n_window=50,
            n_window_infer=800,
        ),
        text_config=dict(
            vocab_size=151936,
            hidden_size=1024,
            intermediate_size=3072,
            num_hidden_layers=28,
            num_attention_heads=16,
            num_key_value_heads=8,
            head_dim=128,
            max_position_embeddings=65536,
            tie_word_embeddings=True,
        ),
        audio_token_id=AUDIO_PAD,
        tie_word_embeddings=True,
    )


def count_parameters(config) -> int:
    """Parameters of the model built on the meta device (no memory allocated)."""
    import torch
    from transformers import Qwen3ASRForConditionalGeneration

    with torch.device("meta"):
        model = Qwen3ASRForConditionalGeneration(config)
    model.tie_weights()
    return sum(p.numel() for p in model.parameters())  # shared (tied) tensors are counted once


@dataclass
class Row:
    batch_size: int
    wall_s: float | None
    audio_s: float
    new_tokens: int
    peak_gib: float | None
    note: str = ""

    def markdown(self) -> str:
        if self.wall_s is None:
            return f"| {self.batch_size} | - | - | - | - | {self.note} |"
        return (
            f"| {self.batch_size} | {self.wall_s:.1f} | {self.audio_s / self.wall_s:.1f} | "
            f"{self.new_tokens / self.wall_s:.0f} | {self.peak_gib:.1f} | {self.note} |"
        )


def prompt_ids(num_audio_tokens: int) -> list[int]:
    # <|im_start|>system\n<|im_end|>\n<|im_start|>user\n<audio><|im_end|>\n<|im_start|>assistant\n
    return (
        [IM_START, SYSTEM, NEWLINE, IM_END, NEWLINE, IM_START, USER, NEWLINE, AUDIO_START]
        + [AUDIO_PAD] * num_audio_tokens
        + [AUDIO_END, IM_END, NEWLINE, IM_START, ASSISTANT, NEWLINE]
    )


def run_batch(model, extractor, audios: list[np.ndarray], new_tokens: int) -> None:
    import torch
    from transformers.models.qwen3_asr.modeling_qwen3_asr import _get_feat_extract_output_lengths

    features = extractor(audios, sampling_rate=SAMPLE_RATE, padding=True, return_attention_mask=True)
    mask = features["attention_mask"]
    n_audio = _get_feat_extract_output_lengths(mask.sum(-1)).tolist()
    ids = [prompt_ids(int(n)) for n in n_audio]
    width = max(map(len, ids))
    input_ids = torch.tensor([[IM_END] * (width - len(i)) + i for i in ids])  # left padding
    attention = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])
    with torch.inference_mode():
        model.generate(
            input_ids=input_ids.cuda(),
            attention_mask=attention.cuda(),
            input_features=features["input_features"].cuda().to(torch.bfloat16),
            input_features_mask=mask.cuda(),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
        )
    torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", default="1,8,32,64")
    parser.add_argument("--inputs", type=int, default=64, help="number of inputs per batch size")
    parser.add_argument("--seconds", type=float, default=120.0, help="length of each input")
    parser.add_argument("--tokens-per-second", type=float, default=4.0)
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "flash_attention_2", "eager"])
    parser.add_argument("--dry-run", action="store_true", help="build the config and count parameters only")
    args = parser.parse_args(argv)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    config = build_config()
    params = count_parameters(config)
    print(f"Qwen3-ASR 0.6B shape: {params / 1e6:.0f} M parameters")
    if args.dry_run:
        return 0

    import torch

    if not torch.cuda.is_available():
        print("error: no CUDA device; this benchmark needs a GPU (use --dry-run on CPU)", file=sys.stderr)
        return 2

    from transformers import Qwen3ASRFeatureExtractor, Qwen3ASRForConditionalGeneration

    config._attn_implementation = args.attn
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen3ASRForConditionalGeneration(config).to(torch.bfloat16).eval()
    model.generation_config.pad_token_id = IM_END
    extractor = Qwen3ASRFeatureExtractor()
    rng = np.random.default_rng(0)
    audios = [(rng.standard_normal(int(args.seconds * SAMPLE_RATE)) * 0.1).astype(np.float32) for _ in range(args.inputs)]
    new_tokens = int(round(args.tokens_per_second * args.seconds))

    run_batch(model, extractor, audios[:1], 8)  # warm-up: kernels, allocator
    rows: list[Row] = []
    for bs in batch_sizes:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        try:
            for i in range(0, len(audios), bs):
                run_batch(model, extractor, audios[i : i + bs], new_tokens)
        except torch.cuda.OutOfMemoryError:
            rows.append(Row(bs, None, 0, 0, None, "out of memory"))
            continue
        wall = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 2**30
        rows.append(Row(bs, wall, args.inputs * args.seconds, args.inputs * new_tokens, peak))
        print(f"batch {bs}: {wall:.1f} s", file=sys.stderr)

    print(
        f"\n{torch.cuda.get_device_name()} · bf16 · {args.attn} · {args.inputs} × {args.seconds:g} s inputs · "
        f"{new_tokens} new tokens each\n"
    )
    print("| batch | wall s | audio s / wall s | new tokens / s | peak GPU GiB | note |")
    print("|---:|---:|---:|---:|---:|---|")
    for row in rows:
        print(row.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
