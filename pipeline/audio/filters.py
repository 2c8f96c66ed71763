"""The ffmpeg filters stages contribute, and the command lines that run them.

Audio stages that are ffmpeg filters (normalize, highpass, resample) do not each cost a
decode/encode pass: each adds an ``AudioFilter`` to the job's ``Audio``
(``pipeline.audio.working``), which renders every pending filter in one ffmpeg run. A
filter that must measure first (loudness, for normalize) gives an analysis expression,
run in a pass that only reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

FilterExpression = tuple[str, dict]  # ffmpeg filter name and its options
Expressions = FilterExpression | list[FilterExpression]  # one filter, or several in order


def as_list(expressions: Expressions) -> list[FilterExpression]:
    """``expressions`` as a list, whether it is one filter or several."""
    return list(expressions) if isinstance(expressions, list) else [expressions]


def describe_filter(expression: FilterExpression) -> str:
    """``name=key=value:…``, as a person reads it (unescaped)."""
    name, options = expression
    return name + ("=" + ":".join(f"{k}={v}" for k, v in options.items()) if options else "")


class AudioFilter(Protocol):
    """One ffmpeg filter a stage contributes to the job's pending filter graph."""

    def expression(self, measurement: dict | None) -> Expressions: ...

    def analysis_expression(self) -> Expressions | None:
        """ffmpeg filter(s) that measure the input first (two-pass), or None."""

    def parse_measurement(self, stderr: str) -> dict:
        """Read what the analysis printed (at log level info); only called when there is one."""


@dataclass
class PlainFilter:
    """A filter with fixed options that measures nothing."""

    name: str
    options: dict = field(default_factory=dict)

    def expression(self, measurement: dict | None) -> FilterExpression:
        return self.name, self.options

    def parse_measurement(self, stderr: str) -> dict:
        raise NotImplementedError("a plain filter measures nothing")

    def analysis_expression(self) -> FilterExpression | None:
        return None


_OPTION_SPECIAL = "\\'=:"  # escaped inside an option value, then the whole filter inside the graph
_GRAPH_SPECIAL = "\\'[],;"


def _escape(text: str, special: str) -> str:
    return "".join("\\" + c if c in special else c for c in text)


def filter_graph(chain: list[FilterExpression]) -> str:
    """``chain`` as one ffmpeg filtergraph, each option value escaped as ffmpeg parses it."""
    parts = []
    for name, options in chain:
        text = name
        if options:
            text += "=" + ":".join(_escape(str(k), _OPTION_SPECIAL) + "=" + _escape(str(v), _OPTION_SPECIAL) for k, v in options.items())
        parts.append(_escape(text, _GRAPH_SPECIAL))
    return ",".join(parts)


def ffmpeg_args(source: str, input_options: dict, chain: list[FilterExpression], output: str, output_options: dict) -> list[str]:
    """The arguments after the global flags: one input, its first audio stream through ``chain``, one output."""
    args: list[str] = []
    for key, value in input_options.items():
        args += [f"-{key}", str(value)]
    args += ["-i", source, "-map", "0:a:0"]
    if chain:
        args += ["-af", filter_graph(chain)]
    for key, value in output_options.items():
        args += [f"-{key}", str(value)]
    return [*args, "-y", output]


__all__ = [
    "AudioFilter", "Expressions", "FilterExpression", "PlainFilter", "as_list", "describe_filter", "ffmpeg_args", "filter_graph",
]
