"""The ``hushdrop`` command: run, watch, status, doctor, models, config check."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hushdrop.pipeline.config import OriginalsPolicy, Settings, load_config
from hushdrop.pipeline.errors import ConfigError, HushdropError, ModelError, StageError
from hushdrop.pipeline.text import terminal_text

# emoji=False: a name holding ":warning:" is printed as it is, not as an emoji
console = Console(stderr=True, soft_wrap=True, emoji=False)
out = Console(soft_wrap=True, emoji=False)  # piped output keeps whole lines


def shown(value: object) -> str:
    """``value`` inside a line of rich markup: control and bidi characters as visible escapes
    (:func:`pipeline.text.terminal_text`) and ``[`` escaped, so a file name or an error message
    can neither drive the terminal nor be read as markup. Text printed with ``markup=False``
    needs only :func:`~pipeline.text.terminal_text`."""
    return escape(terminal_text(value))


def _default_config() -> str:
    return os.environ.get("HUSHDROP_CONFIG", "config.yaml")


def _load(args) -> Settings:
    return load_config(args.config)


def stay_offline() -> None:
    """Commands that transcribe never talk to a model hub: set once, at process start.

    Every model is loaded with ``local_files_only=True`` already; these switches also cover
    whatever a library might fetch that no call argument reaches, and huggingface_hub reads
    them when it is imported, so they are set here, before any ML import, and never by an
    engine (``hushdrop models pull`` must stay online in the same installation).
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"


def _originals_for_run(args, profile) -> OriginalsPolicy | None:
    """What `run` does with the files it was given: keep them unless told otherwise."""
    choice = args.originals
    if choice is None or choice == "keep":
        return None
    if choice == "profile":
        return None if profile.originals.action == "keep" else profile.originals
    return OriginalsPolicy(action=choice)


def cmd_run(args) -> int:
    stay_offline()
    from hushdrop.pipeline.process import Processor
    from hushdrop.pipeline.retention import RetentionError

    from hushdrop.pipeline.watch.sizing import one_process

    settings = one_process(_load(args))
    profile = settings.profile(args.profile)
    originals = _originals_for_run(args, profile)
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
            progress.update(files_task, description=f"[bold]{shown(path.name)}")

            def on_progress(stage: str, fraction: float) -> None:
                progress.update(stage_task, description=f"  {shown(stage)}", completed=fraction)

            try:
                outcome = processor.process(path, profile, on_progress, originals)
            except RetentionError as exc:
                failures += 1
                console.print(f"[red]✗ {shown(path)}[/]: {shown(exc)}")
                continue
            except HushdropError as exc:
                failures += 1
                where = f" in stage {shown(exc.stage)}" if isinstance(exc, StageError) else ""
                console.print(f"[red]✗ {shown(path)}[/]: failed{where}: {shown(getattr(exc, 'message', exc))}")
                continue
            except OSError as exc:
                failures += 1
                console.print(f"[red]✗ {shown(path)}[/]: {shown(exc.strerror or exc)}: {shown(exc.filename or '')}")
                continue
            finally:
                progress.advance(files_task)
            job = outcome.job
            summary = "no speech" if job.transcript.no_speech else f"language {job.transcript.language}"
            if job.translated:
                summary += f", translated into English ({job.text_language})"
            out.print(f"[green]✓[/] {shown(path)} → {shown(summary)}, {outcome.seconds:.1f} s")
            for warning in job.warnings:
                out.print(f"    [yellow]warning:[/] {shown(warning)}")
            for output in outcome.outputs:
                out.print(f"    {shown(output)}")
            out.print(f"    original: {shown(outcome.original.sentence())}")
    processor.close()
    if failures:
        console.print(f"[red]{failures} of {len(args.files)} file(s) failed[/]")
    return 1 if failures else 0


def cmd_watch(args) -> int:
    stay_offline()
    from hushdrop.pipeline.watch.service import watch

    settings = _load(args)
    if args.log_format:
        settings = settings.model_copy(update={"log_format": args.log_format})
    return watch(settings, once=args.once)


def cmd_worker(args) -> int:
    stay_offline()
    from hushdrop.pipeline import logs
    from hushdrop.pipeline.watch.remote_worker import serve

    from hushdrop.pipeline.engines.hub import profile_model_problems

    settings = _load(args)
    logs.setup(args.log_format or settings.log_format)
    missing = profile_model_problems(settings)
    if missing:
        for line in missing:
            console.print(f"not starting: {terminal_text(line)}", style="red", markup=False)
        return 2
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    return serve(settings, queues, args.name)


def cmd_web(args) -> int:
    from hushdrop.pipeline.web.server import WebError, serve, set_password

    if args.set_password:
        path = Path(args.config).expanduser().resolve()
        try:
            set_password(path)
        except WebError as exc:
            console.print(f"error: {terminal_text(exc)}", style="red", markup=False)
            return 2
        out.print(f"[green]✓[/] web.password_hash written to {shown(path)}; restart the page for it to take effect")
        return 0
    return serve(_load(args), args.listen)


def cmd_status(args) -> int:
    import json

    from hushdrop.pipeline.watch.status import collect, render

    status = collect(_load(args))
    if args.json:
        out.print_json(json.dumps(status, default=str), ensure_ascii=True)  # controls, bidi controls: \uXXXX
    else:
        render(status, out)
    return 0 if status.get("running") else 3


def cmd_models(args) -> int:
    from hushdrop.pipeline.engines import catalogue, hub, list_models

    settings = _load(args)
    cat = catalogue.for_settings(settings)
    if args.action == "pull":
        entry = cat.find(args.name)
        if entry is None:
            out.print(f"[red]✗[/] unknown model {shown(args.name)}; choose one of: {shown(', '.join(cat.names()))}")
            return 2
        start = time.monotonic()
        try:
            pulled = hub.pull(entry, cat, revision=args.revision, say=lambda line: out.print(terminal_text(line), markup=False))
        except ModelError as exc:
            out.print(f"[red]✗[/] ", end="")
            out.print(terminal_text(str(exc)), markup=False)
            return 1
        verb = f"pulled and verified in {time.monotonic() - start:.1f} s" if pulled.downloaded else "already pulled and verified"
        out.print(f"[green]✓[/] {shown(entry.name)} {verb}: {shown(pulled.folder)} (revision {pulled.revision[:12]})")
        out.print(f"  pinned in {shown(cat.lock_path)}; use it with `model: {shown(entry.name)}` in a profile", markup=False)
        return 0
    statuses = {(s.engine, s.name): s for s in list_models()}
    from rich.table import Column

    table = Table(Column("model", no_wrap=True), "engine", "here", "size", "RAM/worker", "GPU mem", "languages")
    ready_all, lines = True, []
    for entry in cat.entries:
        status = statuses.get((entry.engine, entry.name))
        if status is None:
            continue
        ready_all &= status.ready or status.optional
        gb = lambda n: f"{n / 1e9:.1f} GB" if n else "?"  # noqa: E731
        languages = ("many" if entry.languages == "multilingual" else entry.languages) + (", →en" if entry.can_translate else "")
        table.add_row(
            shown(entry.name), shown(entry.engine), "[green]ready[/]" if status.ready else "-",
            gb(entry.size_bytes), gb(entry.memory_int8), gb(entry.memory_float16), shown(languages),
        )
        if status.ready or not status.optional:
            lines.append(f"  {entry.name}: {status.where if status.ready else status.detail}")
    out.print(table)
    for line in lines:
        out.print(terminal_text(line), markup=False)
    out.print("→en: can translate into English (task: translate). Get another model: `hushdrop models pull NAME`,", markup=False)
    out.print("then `model: NAME` in a profile; docs/models.md compares them.", markup=False)
    advice = recommend_here()
    out.print(f"recommended here: [bold]{shown(advice.model)}[/] — ", end="")
    out.print(terminal_text(advice.why), markup=False)
    return 0 if ready_all else 1


def recommend_here():
    """`hushdrop models`' advice for this machine: its cores, available memory and GPU."""
    import importlib.util

    from hushdrop.pipeline.engines.catalogue import recommend
    from hushdrop.pipeline.watch.sizing import Machine

    machine = Machine.here()
    gpu_memory: int | None = None
    if machine.cuda:
        gpu_memory = 0
        try:
            import torch

            if torch.cuda.is_available():
                gpu_memory = int(torch.cuda.mem_get_info()[1])
        except Exception:  # noqa: BLE001 - no torch, or no CUDA runtime for it: memory unknown
            pass
    qwen3 = all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))
    return recommend(machine.cores, machine.available_memory, gpu_memory, qwen3)


def cmd_api(args) -> int:
    from datetime import datetime

    from hushdrop.pipeline.api.tokens import TokenStore

    settings = _load(args)
    store = TokenStore(settings)
    if args.api_command == "add-token":
        token = store.add(args.name, args.max_upload_mb, args.concurrent_jobs)
        out.print(f"[green]✓[/] token {shown(args.name)} made; it is shown this once, only its hash is kept:")
        print(token, flush=True)  # plain, on its own line, for scripts and copying
        if not settings.api.enabled:
            out.print("note: the API is off: set api.enabled: true in the config (docs/api.md)")
        return 0
    if args.api_command == "revoke-token":
        store.revoke(args.name)
        out.print(f"[green]✓[/] token {shown(args.name)} revoked: requests carrying it are refused from now on")
        return 0
    tokens = store.tokens()
    if not tokens:
        out.print("no API tokens; `hushdrop api add-token NAME` makes one")
        return 0
    for token in tokens.values():
        made = datetime.fromtimestamp(token.created_at).strftime("%Y-%m-%d %H:%M")
        limits = (f"max_upload_mb {token.upload_limit_mb(settings):g}, concurrent_jobs {token.job_limit(settings)}")
        out.print(f"{shown(token.name)}  made {made}  {limits}", markup=False)
    return 0


def cmd_doctor(args) -> int:
    from hushdrop.pipeline.watch.doctor import checkup, rebuild_ledger

    settings = _load(args)
    if args.rebuild_ledger:
        out.print(terminal_text(rebuild_ledger(settings)), markup=False)
        return 0
    findings = checkup(settings)
    bad = 0
    for finding in findings:
        mark = "[green]✓[/]" if finding.ok else "[red]✗[/]"
        bad += not finding.ok
        out.print(f"{mark} {shown(finding.topic)}: ", end="")
        out.print(terminal_text(finding.detail), markup=False)
    return 1 if bad else 0


def cmd_config_check(args) -> int:
    from hushdrop.pipeline.watch.intake import profile_folder

    settings = _load(args)
    out.print(f"[green]✓[/] {shown(settings.source)} is valid")
    out.print(f"  inbox  {shown(settings.inbox)}\n  outbox {shown(settings.outbox)}\n  work   {shown(settings.workdir)}")
    if settings.executor == "local":
        from hushdrop.pipeline.watch.sizing import resolve_workers

        plan = resolve_workers(settings)
        out.print(f"  {terminal_text(plan.describe())}\n  {terminal_text(plan.describe_pieces(settings))}", markup=False)
    else:
        out.print("  workers: remote (`hushdrop worker` processes through the broker; `workers` is not used)", markup=False)
    for profile in settings.profiles.values():
        folder = profile_folder(settings, profile)
        chain = " → ".join(s.name for s in profile.chain)
        out.print(
            f"  profile {shown(profile.name)}: {shown(folder)} · language {shown(profile.language)}"
            f"{' · translated into English' if profile.task == 'translate' else ''} · {shown(chain)} "
            f"· originals {shown(profile.originals.action)}"
        )
    from hushdrop.pipeline.notify import all_urls, contacted_host

    hosts = list(dict.fromkeys(contacted_host(url) for url in all_urls(settings)))
    out.print(
        f"  notifications: sent to {', '.join(hosts)}" if hosts else "  notifications: off (no notify urls)", markup=False,
    )
    out.print(f"  {terminal_text(_api_line(settings))}", markup=False)
    from hushdrop.pipeline.engines.hub import profile_model_problems

    problems = profile_model_problems(settings)
    for problem in problems:
        out.print("[red]✗[/] ", end="")
        out.print(terminal_text(problem), markup=False)
    return 1 if problems else 0


def _api_line(settings) -> str:
    """What `config check` says of the API: off, or where it listens, its profile and tokens."""
    if not settings.api.enabled:
        return "api: off (api.enabled: false)"
    from hushdrop.pipeline.api.tokens import TokenStore, TokenError

    try:
        count = len(TokenStore(settings).tokens())
    except TokenError as exc:
        return f"api: on, but {exc}"
    tokens = f"{count} token(s)" if count else "no tokens yet: `hushdrop api add-token NAME`"
    local = " (this machine needs none)" if settings.api.loopback_without_token else ""
    serving = "" if settings.web.enabled else "; `hushdrop watch` serves it only with web.enabled (or run `hushdrop web`)"
    return (f"api: on at http://{settings.web.listen} (/v1/audio/…, /asr), profile {settings.api.profile}, "
            f"{tokens}{local}{serving}")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hushdrop")
    except PackageNotFoundError:
        return "unknown"


def _profiles_help() -> str:
    try:
        settings = load_config(_default_config())
    except (ConfigError, OSError):
        return "profiles: see config.yaml"
    return terminal_text("profiles in " + str(settings.source) + ": " + "; ".join(
        f"{p.name} (language {p.language}, originals {p.originals.action} in watch mode)" for p in settings.profiles.values()
    ))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hushdrop", description="Private, local speech-to-text for a watched folder.")
    parser.add_argument("--version", action="version", version=f"hushdrop {_version()}")
    parser.add_argument("--config", "-c", default=_default_config(), help="config file (default: ./config.yaml or $HUSHDROP_CONFIG)")
    # every subcommand accepts --config too, before or after its name
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", default=argparse.SUPPRESS, help="config file (default: ./config.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run", parents=[common], help="transcribe files now, in the foreground",
        description=(
            "Transcribe FILEs now. The files you name are KEPT unless you say otherwise "
            "(--shred, --delete or --originals): the profile's `originals` setting applies to files "
            "the watcher takes from its inbox. A file with several names (hard links) or in a folder "
            "hushdrop cannot write is never shredded or deleted."
        ),
        epilog=_profiles_help(),
    )
    run.add_argument("files", nargs="+", metavar="FILE")
    run.add_argument("--profile", "-p", default="default", help="profile whose chain and outputs to use")
    what = run.add_mutually_exclusive_group()
    what.add_argument("--keep", dest="originals", action="store_const", const="keep", help="keep the files (the default)")
    what.add_argument("--shred", dest="originals", action="store_const", const="shred", help="shred each file once its transcripts are written")
    what.add_argument("--delete", dest="originals", action="store_const", const="delete", help="delete each file once its transcripts are written")
    what.add_argument(
        "--originals", choices=["keep", "shred", "delete", "profile"], default=None,
        help="what to do with each file afterwards; 'profile' applies the profile's setting",
    )
    run.set_defaults(func=cmd_run)

    watch = sub.add_parser("watch", parents=[common], help="watch the inbox and transcribe what arrives")
    watch.add_argument("--once", action="store_true", help="process what is there now, then exit")
    watch.add_argument("--log-format", choices=["text", "json"], help="override the config's log_format")
    watch.set_defaults(func=cmd_watch)

    worker = sub.add_parser(
        "worker", parents=[common], help="run jobs for a coordinator through the broker (executor: celery, docs/scale-out.md)"
    )
    worker.add_argument("--queues", default="hushdrop", help="comma-separated queues to take jobs from (a profile's `queue`)")
    worker.add_argument("--name", help="this worker's name in `hushdrop status` (default: host-pid)")
    worker.add_argument("--log-format", choices=["text", "json"])
    worker.set_defaults(func=cmd_worker)

    web = sub.add_parser("web", parents=[common], help="serve the web page: upload, record, queue, results, search")
    web.add_argument("--listen", metavar="HOST:PORT", help="address to serve on (default: web.listen, 127.0.0.1:8765)")
    web.add_argument("--set-password", action="store_true", help="ask for a password and write its scrypt hash into the config")
    web.set_defaults(func=cmd_web)

    status = sub.add_parser("status", parents=[common], help="what the watcher is doing: queue, running jobs, recent results")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    doctor = sub.add_parser("doctor", parents=[common], help="check ffmpeg, the model, the folders, free space and the ledger")
    doctor.add_argument(
        "--rebuild-ledger", action="store_true",
        help="move a damaged ledger aside and rebuild the queue from the spool (stop `watch` first)",
    )
    doctor.set_defaults(func=cmd_doctor)

    models = sub.add_parser("models", parents=[common], help="list engines and models, or pull one")
    models.add_argument("action", nargs="?", choices=["list", "pull"], default="list")
    models.add_argument("name", nargs="?", help="the model to pull: a name `hushdrop models` lists")
    models.add_argument("--revision", help="pull: a commit, branch or tag of the model's repository (default: what models.lock pins, else main)")
    models.set_defaults(func=cmd_models)

    api = sub.add_parser("api", parents=[common], help="the transcription API's tokens (docs/api.md)")
    api_sub = api.add_subparsers(dest="api_command", required=True)
    add_token = api_sub.add_parser("add-token", parents=[common], help="make a token; it is printed once")
    add_token.add_argument("name", help="who it is for, e.g. bazarr")
    add_token.add_argument("--max-upload-mb", type=float, help="this token's largest request (default: api.max_upload_mb)")
    add_token.add_argument("--concurrent-jobs", type=int, help="this token's requests at once (default: api.concurrent_jobs)")
    api_sub.add_parser("list-tokens", parents=[common], help="the tokens there are (never the tokens themselves)")
    revoke = api_sub.add_parser("revoke-token", parents=[common], help="refuse a token from now on")
    revoke.add_argument("name")
    api.set_defaults(func=cmd_api)

    config = sub.add_parser("config", parents=[common], help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", parents=[common], help="validate the config file")
    check.set_defaults(func=cmd_config_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "action", None) == "pull" and not args.name:
        parser.error("models pull needs a NAME, e.g. hushdrop models pull small")
    try:
        return args.func(args)
    except ConfigError as exc:
        problems = "".join(f"\n  - {terminal_text(problem)}" for problem in exc.problems)
        console.print(f"invalid configuration in {terminal_text(exc.source)}:{problems}", style="red", markup=False)
        return 2
    except HushdropError as exc:
        console.print(f"error: {terminal_text(exc)}", style="red", markup=False)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
