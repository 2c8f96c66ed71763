"""Serving the page with uvicorn: in the foreground (``hushdrop web``) or beside the watcher.

The listening socket is bound here, before uvicorn starts, so a taken port or a bad
address is reported at once with what to do. ``WebThread`` runs the server in a thread of
``hushdrop watch`` and stops it on shutdown. Over TLS (``web.tls_cert``/``web.tls_key``,
relative to config.yaml) the page is HTTPS, which browsers require for the microphone
anywhere but on localhost.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import socket
import sys
import threading
from pathlib import Path

from hushdrop.pipeline.config import Settings, load_config
from hushdrop.pipeline.errors import ConfigError, HushdropError
from hushdrop.pipeline.logs import log
from hushdrop.pipeline.web.address import parse_listen


class WebError(HushdropError):
    pass


def tls_files(settings: Settings) -> tuple[str, str] | None:
    web = settings.web
    if web.tls_cert is None or web.tls_key is None:
        return None
    base = settings.source.parent
    cert, key = (str(p if p.is_absolute() else base / p) for p in (web.tls_cert, web.tls_key))
    for path in (cert, key):
        if not os.path.isfile(path):
            raise WebError(f"web TLS file {path} does not exist")
    return cert, key


def bind(listen: str) -> socket.socket:
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise WebError(f"--listen / web.listen: {exc}") from None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise WebError(
            f"cannot open a network socket ({exc.strerror}); under systemd the shipped unit keeps the service "
            f"off the network (PrivateNetwork, RestrictAddressFamilies): see docs/web.md to serve the page"
        ) from None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host in ("::", "") else 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise WebError(
            f"cannot listen on {listen}: {exc.strerror}"
            + (" (another program uses the port: choose another with web.listen or --listen)" if exc.errno == 98 else "")
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, tls: bool) -> str:
    host, port = sock.getsockname()[:2]
    shown = "127.0.0.1" if host in ("0.0.0.0",) else f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}/"


def make_server(settings: Settings, listen: str):
    import uvicorn

    from hushdrop.pipeline.web.app import create_app

    tls = tls_files(settings)
    app = create_app(settings, listen=listen, tls=tls is not None)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", proxy_headers=False, server_header=False,
        ssl_certfile=tls[0] if tls else None, ssl_keyfile=tls[1] if tls else None,
        timeout_graceful_shutdown=3, limit_concurrency=200,
    )
    return uvicorn.Server(config), tls is not None


class WebThread:
    """The page served from a thread of ``hushdrop watch``."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.sock = bind(settings.web.listen)
        try:
            self.server, tls = make_server(settings, settings.web.listen)
        except BaseException:
            self.sock.close()
            raise
        self.url = url_of(self.sock, tls)
        self.thread = threading.Thread(target=self._run, name="web", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve(sockets=[self.sock]))
        except BaseException:  # noqa: BLE001 - the folder keeps working without the page
            log().exception("the web page stopped")

    def start(self) -> "WebThread":
        self.thread.start()
        log().info("web page at %s", self.url)
        return self

    def stop(self) -> None:
        self.server.config.app.state.web.stopping = True  # waiting API requests answer before uvicorn cancels them
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def serve(settings: Settings, listen: str | None = None) -> int:
    """``hushdrop web``: serve the page in the foreground until Ctrl-C."""
    from hushdrop.pipeline import logs

    logs.setup(settings.log_format)
    listen = listen or settings.web.listen
    try:
        sock = bind(listen)
    except WebError as exc:
        log().error("%s", exc)
        return 2
    try:
        server, tls = make_server(settings, listen)
    except (WebError, ConfigError) as exc:
        sock.close()
        log().error("%s", exc)
        return 2
    log().info("web page at %s (Ctrl-C stops it); uploads go to %s", url_of(sock, tls), settings.inbox)
    try:
        server.run(sockets=[sock])  # Ctrl-C / SIGTERM end it (uvicorn's handlers)
    finally:
        sock.close()
    return 0


def set_password(config_path: Path, password: str | None = None) -> str:
    """Ask for a password (twice), hash it with scrypt and write ``web.password_hash`` into config.yaml.

    The file is edited as text, so its comments stay; the result is validated before it
    replaces the old file (atomically).
    """
    from hushdrop.pipeline.fsutil import fsync_dir, write_temp
    from hushdrop.pipeline.web.security import hash_password

    if password is None:
        if sys.stdin.isatty():
            password = getpass.getpass("new password for the web page: ")
            if getpass.getpass("again: ") != password:
                raise WebError("the two passwords differ; nothing was changed")
        else:
            password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        raise WebError("use at least 8 characters; nothing was changed")
    hashed = hash_password(password)
    text = config_path.read_text(encoding="utf-8")
    new = set_yaml_password(text, hashed)
    import yaml

    from hushdrop.pipeline.config import parse_config

    parse_config(yaml.safe_load(new), config_path)  # never write a config that does not load
    st = os.stat(config_path)
    temp = write_temp(config_path.parent, new.encode("utf-8"))
    os.chmod(temp, st.st_mode & 0o777)
    os.replace(temp, config_path)
    fsync_dir(config_path.parent)
    load_config(config_path)
    return hashed


def set_yaml_password(text: str, hashed: str) -> str:
    """``text`` (a config.yaml) with ``web.password_hash`` set to ``hashed``, comments kept."""
    lines = text.splitlines(keepends=True)
    entry = f'password_hash: "{hashed}"\n'
    web_at = next((i for i, line in enumerate(lines) if line.rstrip() == "web:" or line.startswith("web:")), None)
    if web_at is None:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        return "".join(lines) + f"\nweb:\n  {entry}"
    if lines[web_at].strip() not in ("web:",) and "{" in lines[web_at]:
        raise WebError("config.yaml writes `web:` on one line ({…}); write it as a block, then try again")
    indent = "  "
    for i in range(web_at + 1, len(lines)):
        line = lines[i]
        if line.strip() and not line.startswith((" ", "\t")) and not line.lstrip().startswith("#"):
            break  # the next top-level key: the web block ended without a password_hash
        if line.strip() and not line.lstrip().startswith("#"):
            indent = line[: len(line) - len(line.lstrip())]
            if line.strip().startswith("password_hash:"):
                lines[i] = indent + entry
                return "".join(lines)
    lines.insert(web_at + 1, indent + entry)
    return "".join(lines)
