"""Tiny Qwen3-ASR checkpoints with random weights, built once per test session.

They use the real transformers classes (``Qwen3ASRForConditionalGeneration``,
``Qwen3ASRForTokenClassification``, ``Qwen3ASRProcessor``) with a small config, a
byte-level BPE tokenizer that carries every special token the chat templates need, and
chat templates that produce the same prompt layout as the published ``-hf`` checkpoints.
Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers", minversion="5.13")

import torch  # noqa: E402
from tokenizers import AddedToken  # noqa: E402
from transformers import (  # noqa: E402
    Qwen3ASRConfig,
    Qwen3ASRFeatureExtractor,
    Qwen3ASRForConditionalGeneration,
    Qwen3ASRForTokenClassification,
    Qwen3ASRProcessor,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode  # noqa: E402
from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer  # noqa: E402

from hushdrop.pipeline.engines.base import SAMPLE_RATE, EngineSpec  # noqa: E402
from hushdrop.pipeline.engines.qwen3 import Qwen3AsrEngine, Qwen3Options  # noqa: E402

# Layout of the published checkpoints: system turn (context), user turn (audio),
# assistant turn (empty, or prefilled with "language X<asr_text>" to force a language).
ASR_TEMPLATE = (
    "{%- set ns = namespace(system='', audio='', reply=none) -%}"
    "{%- for m in messages -%}"
    "{%- set parts = [{'type': 'text', 'text': m.content}] if m.content is string else m.content -%}"
    "{%- for c in parts -%}"
    "{%- if c.type == 'audio' -%}{%- set ns.audio = ns.audio + '<|audio_start|><|audio_pad|><|audio_end|>' -%}"
    "{%- elif c.type == 'text' and m.role == 'system' -%}{%- set ns.system = ns.system + c.text -%}"
    "{%- elif c.type == 'text' and m.role == 'assistant' -%}{%- set ns.reply = (ns.reply or '') + c.text -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endfor -%}"
    "{{- '<|im_start|>system\\n' + ns.system + '<|im_end|>\\n<|im_start|>user\\n' + ns.audio + '<|im_end|>\\n' -}}"
    "{%- if ns.reply is not none -%}{{- '<|im_start|>assistant\\n' + ns.reply + '<|im_end|>\\n' -}}"
    "{%- elif add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
# The aligner reads: audio, then every word followed by two <timestamp> slots.
ALIGNER_TEMPLATE = (
    "{%- set ns = namespace(audio='', words=[]) -%}"
    "{%- for m in messages -%}{%- for c in m.content -%}"
    "{%- if c.type == 'audio' -%}{%- set ns.audio = ns.audio + '<|audio_start|><|audio_pad|><|audio_end|>' -%}"
    "{%- elif c.type == 'text' -%}{%- set ns.words = ns.words + [c.text] -%}{%- endif -%}"
    "{%- endfor -%}{%- endfor -%}"
    "{{- ns.audio -}}{%- for w in ns.words -%}{{- w + '<timestamp><timestamp>' -}}{%- endfor -%}"
)

# Low ids are whole words: the "looping" model below always emits id 0.
WORDS = ["Ġhello", "Ġworld", "Ġthe", "Ġcat", "Ġsat", "Ġon", "Ġmat", ".", "Ġlanguage", "ĠEnglish"]
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_start|>", "<|audio_end|>", "<|audio_pad|>"]
MEL_BINS = 16


def build_tokenizer() -> Qwen2Tokenizer:
    vocab: dict[str, int] = {}
    merges: list[tuple[str, str]] = []
    for word in WORDS:
        vocab[word] = len(vocab)
    for char in bytes_to_unicode().values():
        vocab.setdefault(char, len(vocab))
    for word in WORDS:
        current = word[0]
        for char in word[1:]:
            merges.append((current, char))
            current += char
            vocab.setdefault(current, len(vocab))
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "audio_token": "<|audio_pad|>",
            "audio_bos_token": "<|audio_start|>",
            "audio_eos_token": "<|audio_end|>",
        },
    )
    tokenizer.add_tokens([AddedToken(t, special=True) for t in SPECIAL])
    # Not special: the output parser must still see "<asr_text>" after skip_special_tokens.
    tokenizer.add_tokens([AddedToken("<asr_text>", special=False), AddedToken("<timestamp>", special=False)])
    return tokenizer


def tiny_config(tokenizer: Qwen2Tokenizer, **extra) -> Qwen3ASRConfig:
    ids = tokenizer.convert_tokens_to_ids
    return Qwen3ASRConfig(
        audio_config=dict(
            num_mel_bins=MEL_BINS,
            encoder_layers=1,
            encoder_attention_heads=2,
            encoder_ffn_dim=32,
            d_model=16,
            output_dim=32,
            downsample_hidden_size=8,
        ),
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            max_position_embeddings=32768,
            tie_word_embeddings=True,
        ),
        audio_token_id=ids("<|audio_pad|>"),
        timestamp_token_id=ids("<timestamp>"),
        pad_token_id=ids("<|endoftext|>"),
        eos_token_id=[ids("<|endoftext|>"), ids("<|im_end|>")],
        **extra,
    )


def save_processor(tokenizer: Qwen2Tokenizer, template: str, path: Path) -> None:
    feature_extractor = Qwen3ASRFeatureExtractor(feature_size=MEL_BINS)
    Qwen3ASRProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer, chat_template=template).save_pretrained(
        path
    )


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("qwen3")
    tokenizer = build_tokenizer()
    word_ids = tokenizer.convert_tokens_to_ids(WORDS)
    paths = {name: root / name for name in ("asr", "looping", "aligner")}

    torch.manual_seed(1234)
    model = Qwen3ASRForConditionalGeneration(tiny_config(tokenizer))
    with torch.no_grad():
        # Random weights pick any token; louder word rows make the output printable text.
        model.get_input_embeddings().weight[word_ids] *= 40.0
    model.save_pretrained(paths["asr"])
    save_processor(tokenizer, ASR_TEMPLATE, paths["asr"])

    with torch.no_grad():
        # A zero final norm gives all-zero logits: greedy decoding repeats token 0 forever.
        model.model.language_model.norm.weight.zero_()
    model.save_pretrained(paths["looping"])
    save_processor(tokenizer, ASR_TEMPLATE, paths["looping"])

    aligner = Qwen3ASRForTokenClassification(tiny_config(tokenizer, num_labels=3750))
    aligner.save_pretrained(paths["aligner"])
    save_processor(tokenizer, ALIGNER_TEMPLATE, paths["aligner"])
    return paths


def make_engine(path: Path, aligner: Path | None = None, **options) -> Qwen3AsrEngine:
    spec = EngineSpec(engine="qwen3-asr", model=str(path), device="cpu", aligner=str(aligner) if aligner else None)
    return Qwen3AsrEngine(spec, Qwen3Options(**options))


# Tiny generation budgets keep the tests fast: the random model rarely stops on its own.
FAST = dict(tokens_per_second=1.0, token_margin=4)


@pytest.fixture(scope="session")
def engine(tiny_checkpoints: dict[str, Path]) -> Iterator[Qwen3AsrEngine]:
    eng = make_engine(tiny_checkpoints["asr"], **FAST)
    yield eng
    eng.close()


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise bursts of 0.5-3 s ("words") separated by short near-silent gaps."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    audio = rng.standard_normal(n).astype(np.float32) * 0.001
    pos = 0
    while pos < n:
        burst = int(rng.uniform(0.5, 3.0) * SAMPLE_RATE)
        audio[pos : pos + burst] *= 200.0
        pos += burst + int(rng.uniform(0.1, 0.6) * SAMPLE_RATE)
    return audio
