"""The ``hushdrop`` command: run, watch, models, config check."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# hushdrop never talks to a model hub while it works: set before any ML import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from pipeline.config import Settings, load_config  # noqa: E402
from pipeline.errors import ConfigError, HushdropError, StageError  # noqa: E402

console = Console(stderr=True)
out = Console()


def _default_config() -> str:
    return os.environ.get("HUSHDROP_CONFIG", "config.yaml")


def _load(args) -> Settings:
    return load_config(args.config)


def cmd_run(args) -> int:
    from pipeline.process import Processor

    settings = _load(args)
    profile = settings.profile(args.profile)
    if args.keep:
        profile = profile.model_copy(update={"originals": profile.originals.model_copy(update={"action": "keep"})})
    processor = Processor(settings)
    failures = 0
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        files_task = progress.add_task("files", total=len(args.files))
        stage_task = progress.add_task("", total=1.0)
        for name in args.files:
            path = Path(name)
            progress.update(files_task, description=f"[bold]{path.name}")

            def on_progress(stage: str, fraction: float) -> None:
                progress.update(stage_task, description=f"  {stage}", completed=fraction)

            try:
                outcome = processor.process(path, profile, on_progress)
            except HushdropError as exc:
                failures += 1
                where = f" in stage {exc.stage}" if isinstance(exc, StageError) else ""
                console.print(f"[red]✗ {path}[/]: failed{where}: {getattr(exc, 'message', exc)}")
                continue
            except OSError as exc:
                failures += 1
                console.print(f"[red]✗ {path}[/]: {exc.strerror or exc}: {exc.filename or ''}")
                continue
            finally:
                progress.advance(files_task)
            job = outcome.job
            summary = "no speech" if job.transcript.no_speech else f"language {job.transcript.language}"
            out.print(f"[green]✓[/] {path} → {summary}, {outcome.seconds:.1f} s")
            for warning in job.warnings:
                out.print(f"    [yellow]warning:[/] {warning}")
            for output in outcome.outputs:
                out.print(f"    {output}")
            out.print(f"    original: {outcome.retention}")
    processor.close()
    if failures:
        console.print(f"[red]{failures} of {len(args.files)} file(s) failed[/]")
    return 1 if failures else 0


def cmd_watch(args) -> int:
    from pipeline.service import watch

    settings = _load(args)
    if args.log_format:
        settings = settings.model_copy(update={"log_format": args.log_format})
    return watch(settings, once=args.once)


def cmd_status(args) -> int:
    import json

    from pipeline.status import collect, render

    status = collect(_load(args))
    if args.json:
        out.print_json(json.dumps(status, default=str))
    else:
        render(status, out)
    return 0 if status.get("running") else 3


def cmd_models(args) -> int:
    from pipeline.models import list_models

    if args.action == "pull":
        from pipeline.engines.qwen3 import pull_model

        path = pull_model(args.name)
        out.print(f"{args.name} is ready in {path}")
        return 0
    table = Table("engine", "model", "ready", "where / what to do")
    ready_all = True
    for status in list_models():
        ready_all &= status.ready or status.engine != "whisper"
        table.add_row(status.engine, status.name, "yes" if status.ready else "no", status.detail if not status.ready else status.where)
    out.print(table)
    return 0 if ready_all else 1


def cmd_config_check(args) -> int:
    settings = _load(args)
    out.print(f"[green]✓[/] {settings.source} is valid")
    out.print(f"  inbox  {settings.inbox}\n  outbox {settings.outbox}\n  work   {settings.workdir}")
    for profile in settings.profiles.values():
        folder = settings.inbox / profile.folder if profile.folder else settings.inbox
        chain = " → ".join(s.name for s in profile.chain)
        out.print(f"  profile {profile.name}: {folder} · language {profile.language} · {chain} · originals {profile.originals.action}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hushdrop", description="Private, local speech-to-text for a watched folder.")
    parser.add_argument("--config", "-c", default=_default_config(), help="config file (default: ./config.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="transcribe files now, in the foreground")
    run.add_argument("files", nargs="+", metavar="FILE")
    run.add_argument("--profile", "-p", default="default")
    run.add_argument("--keep", action="store_true", help="keep the originals whatever the profile says")
    run.set_defaults(func=cmd_run)

    watch = sub.add_parser("watch", help="watch the inbox and transcribe what arrives")
    watch.add_argument("--once", action="store_true", help="process what is there now, then exit")
    watch.add_argument("--log-format", choices=["text", "json"], help="override the config's log_format")
    watch.set_defaults(func=cmd_watch)

    status = sub.add_parser("status", help="what the watcher is doing: queue, running jobs, recent results")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    models = sub.add_parser("models", help="list engines and models, or pull one")
    models.add_argument("action", nargs="?", choices=["list", "pull"], default="list")
    models.add_argument("name", nargs="?")
    models.set_defaults(func=cmd_models)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate the config file")
    check.set_defaults(func=cmd_config_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "action", None) == "pull" and not args.name:
        parser.error("models pull needs a NAME, e.g. hushdrop models pull Qwen/Qwen3-ASR-0.6B-hf")
    try:
        return args.func(args)
    except ConfigError as exc:
        console.print(str(exc), style="red", markup=False)
        return 2
    except HushdropError as exc:
        console.print(f"error: {exc}", style="red", markup=False)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
