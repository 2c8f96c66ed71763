"""The container's entrypoint (``python -m hushdrop.pipeline.container [COMMAND …]``): docs/container.md.

Started as root by the image, it never lets hushdrop run as root:

1. as root: reads ``PUID``/``PGID``/``UMASK``, gives a volume that is still empty and
   root-owned (a new named volume) to that user, then becomes that user with ``setpriv``
   (util-linux, in every Debian) and, being PID 1, ``tini`` (which reaps orphans and passes
   signals on), which starts this module again as its child; nothing stays root;
2. as the user: writes ``/config/config.yaml`` from the shipped config on first start (paths
   pointing at the volumes, the page on every address), checks that every folder the config
   names can be written by this user (else one line per folder saying how to fix it, exit 2),
   sets the page's password (``HUSHDROP_WEB_PASSWORD_FILE``, or one generated and printed once),
   then ``exec``s ``hushdrop COMMAND`` (default ``watch``) in the same process, so SIGTERM from
   ``docker stop`` reaches it directly.

``--healthcheck`` is the image's HEALTHCHECK: ``/healthz`` of the page, with the standard library.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import sys
from pathlib import Path

VOLUMES = ("/config", "/inbox", "/outbox", "/data", "/models")
SHIPPED_CONFIG = Path(sys.prefix) / "share" / "config.yaml"
DEFAULT_CONFIG = "/config/config.yaml"
PAGE_COMMANDS = ("watch", "web")
# docker and podman give a container 10 s after SIGTERM before they kill it
CONTAINER_GRACE_SECONDS = 5

# The shipped config's lines that change in a container: (pattern, replacement).
CONTAINER_SETTINGS = (
    (r"^inbox: inbox\b", "inbox: /inbox"),
    (r"^outbox: outbox\b", "outbox: /outbox"),
    (r"^workdir: \.hushdrop\b", "workdir: /data"),
    (r"^shutdown_grace_seconds: \d+\b", f"shutdown_grace_seconds: {CONTAINER_GRACE_SECONDS}"),
    (r"^  listen: 127\.0\.0\.1:8765\b", "  listen: 0.0.0.0:8765"),
    (r"\{move: archive/", "{move: /data/archive/"),
)
CONFIG_HEADER = (
    "# Written by the container on its first start from hushdrop's shipped config.yaml: the paths\n"
    "# point at the volumes (/inbox, /outbox, /data; models in /models), the page listens on every\n"
    "# address with a password, and SIGTERM lets a running job finish for\n"
    f"# {CONTAINER_GRACE_SECONDS} s (docker stop waits 10 s; raise both together). Edit it freely: it is\n"
    "# never written again (but for web.password_hash). docs/container.md\n\n"
)


class StartError(Exception):
    """A reason not to start, as one line a person can act on."""


def say(message: str) -> None:
    print(f"hushdrop: {message}", file=sys.stderr, flush=True)


# -- as root ---------------------------------------------------------------------------------

def ids_from_env(env: os._Environ | dict) -> tuple[int, int, int]:
    """(uid, gid, umask) from PUID, PGID and UMASK; root is refused."""
    values = []
    for key, default in (("PUID", "1000"), ("PGID", "1000")):
        text = (env.get(key) or default).strip()
        if not text.isdigit() or int(text) >= 2**31:
            raise StartError(f"{key}={text!r} is not a number: give the numeric id of your folders' owner (`id -u`, `id -g` on the host)")
        if int(text) == 0:
            raise StartError(
                f"{key}=0: hushdrop never runs as root; set PUID and PGID to the owner of your folders (`id -u`, `id -g` on the host)"
            )
        values.append(int(text))
    mask = (env.get("UMASK") or "022").strip()
    if not re.fullmatch(r"0?[0-7]{3}", mask):
        raise StartError(f"UMASK={mask!r} is not an octal mask such as 022 or 027")
    return values[0], values[1], int(mask, 8)


def claim_empty_volumes(uid: int, gid: int, volumes: tuple[str, ...] = VOLUMES) -> list[str]:
    """Give a volume folder that is empty and owned by root (what a new named volume is) to the
    user. A folder with anything in it, or with another owner, is never changed."""
    claimed = []
    for folder in volumes:
        try:
            st = os.lstat(folder)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and (st.st_uid, st.st_gid) != (uid, gid) and not os.listdir(folder):
                os.chown(folder, uid, gid)
                claimed.append(folder)
        except OSError:
            continue  # the user-side check says what is wrong with it
    return claimed


def again(argv: list[str]) -> list[str]:
    """This module with ``argv``, under tini when this process is PID 1 (tini then reaps)."""
    this = [sys.executable, "-m", "hushdrop.pipeline.container", *argv]
    return ["tini", "--", *this] if os.getpid() == 1 else this


def drop_privileges(uid: int, gid: int, argv: list[str]) -> None:
    """Run this module again as uid:gid, with no supplementary groups and no way back."""
    os.execvp("setpriv", [
        "setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--no-new-privs", *again(argv),
    ])


# -- as the user -----------------------------------------------------------------------------

def container_config_text(shipped: str) -> str:
    """The shipped config.yaml with the container's paths, listen address and grace."""
    text = shipped
    for pattern, replacement in CONTAINER_SETTINGS:
        text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        if count == 0:
            raise StartError(f"the shipped config.yaml has no line matching {pattern!r}: the image is inconsistent; rebuild it")
    return CONFIG_HEADER + text


def write_config(path: Path, shipped: Path = SHIPPED_CONFIG) -> bool:
    """Write the container's config.yaml at ``path`` if there is none; True if it was written."""
    from hushdrop.pipeline.fsutil import fsync_dir, write_temp

    if path.exists():
        return False
    temp = write_temp(path.parent, container_config_text(shipped.read_text(encoding="utf-8")).encode("utf-8"))
    os.chmod(temp, 0o640)
    try:
        os.link(temp, path)  # never over a config that appeared meanwhile
    except FileExistsError:
        return False
    finally:
        os.unlink(temp)
    fsync_dir(path.parent)
    return True


def writable_problem(folder: Path, uid: int, gid: int) -> str | None:
    """Why this user cannot make files in ``folder`` (created if missing), or None."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
        return None
    except OSError as exc:
        try:
            st = folder.stat()
            owner = f"owned by {st.st_uid}:{st.st_gid}, mode {stat.S_IMODE(st.st_mode):04o}"
        except OSError:
            owner = "missing"
        return (
            f"{folder} cannot be written by PUID={uid} PGID={gid} ({exc.strerror}; {owner}): on the host, "
            f"`chown -R {uid}:{gid}` the folder mounted there, or set PUID/PGID to its owner"
        )


def config_folders(settings) -> list[Path]:
    from hushdrop.pipeline.models import cache_dir

    folders = [settings.inbox, settings.outbox, settings.workdir]
    if settings.spool is not None:
        folders.append(settings.spool)
    folders.append(cache_dir())
    return folders


def set_page_password(config_path: Path, settings, command: str, env: os._Environ | dict) -> str | None:
    """Give the page a password before it listens beyond loopback; the generated password if one was made."""
    from hushdrop.pipeline.web.address import is_loopback, parse_listen
    from hushdrop.pipeline.web.security import verify_password
    from hushdrop.pipeline.web.server import WebError, set_password

    if command not in PAGE_COMMANDS or (command == "watch" and not settings.web.enabled):
        return None
    host, _ = parse_listen(settings.web.listen)
    secret_file = env.get("HUSHDROP_WEB_PASSWORD_FILE")
    try:
        if secret_file:
            try:
                password = Path(secret_file).read_text(encoding="utf-8").strip("\r\n")
            except OSError as exc:
                raise StartError(f"HUSHDROP_WEB_PASSWORD_FILE={secret_file}: cannot read it ({exc.strerror})") from None
            if settings.web.password_hash is None or not verify_password(password, settings.web.password_hash):
                set_password(config_path, password)
                say(f"the page's password is the one in {secret_file}")
            return None
        if settings.web.password_hash is not None or is_loopback(host):
            return None
        password = secrets.token_urlsafe(12)
        set_password(config_path, password)
        return password
    except WebError as exc:
        raise StartError(f"the page's password: {exc}") from None
    except OSError as exc:
        raise StartError(
            f"cannot write the page's password hash into {config_path} ({exc.strerror}): make the config writable by "
            f"PUID/PGID, or set web.password_hash (`hushdrop web --set-password`)"
        ) from None


def prepare(argv: list[str], env: os._Environ | dict) -> None:
    """Everything the user-side start does before hushdrop runs; raises StartError."""
    from hushdrop.pipeline.config import load_config
    from hushdrop.pipeline.errors import ConfigError

    uid, gid = os.getuid(), os.getgid()
    config_path = Path(env.get("HUSHDROP_CONFIG") or DEFAULT_CONFIG)
    problem = writable_problem(config_path.parent, uid, gid) if not config_path.exists() else None
    if problem:
        raise StartError(problem)
    if write_config(config_path):
        say(f"wrote {config_path} from the shipped config (inbox /inbox, outbox /outbox, workdir /data)")
    try:
        settings = load_config(config_path)
    except ConfigError as exc:
        raise StartError(str(exc).replace("\n", "; ")) from None
    problems = [p for p in (writable_problem(folder, uid, gid) for folder in config_folders(settings)) if p]
    if problems:
        raise StartError("\nhushdrop: ".join(problems))
    password = set_page_password(config_path, settings, argv[0] if argv else "", env)
    if password is not None:
        _, port = (settings.web.listen.rsplit(":", 1) + ["8765"])[:2]
        scheme = "https" if settings.web.tls_cert else "http"
        print(
            f"hushdrop: open {scheme}://HOST:{port}/ (HOST: this machine's name or address), password: {password}"
            f" — shown only this once; change it with `docker exec -it CONTAINER hushdrop web --set-password`",
            flush=True,
        )


def healthcheck(env: os._Environ | dict) -> int:
    """0 when the page's /healthz answers 200 (the HEALTHCHECK), else 1 with the reason."""
    import ssl
    import urllib.request

    import yaml

    try:
        raw = yaml.safe_load(Path(env.get("HUSHDROP_CONFIG") or DEFAULT_CONFIG).read_text(encoding="utf-8")) or {}
        web = raw.get("web") or {}
        if not web.get("enabled", False):
            print("unhealthy: the page is off (web.enabled: false), so there is no /healthz to ask")
            return 1
        port = str(web.get("listen", "127.0.0.1:8765")).rsplit(":", 1)[1]
        scheme = "https" if web.get("tls_cert") else "http"
        context = ssl._create_unverified_context() if scheme == "https" else None  # noqa: S323 - our own page, by loopback
        with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/healthz", timeout=8, context=context) as answer:
            return 0 if answer.status == 200 else 1
    except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy", said in one line
        print(f"unhealthy: {exc}")
        return 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--healthcheck"]:
        return healthcheck(os.environ)
    argv = argv or ["watch"]
    try:
        uid, gid, mask = ids_from_env(os.environ)
        if os.geteuid() == 0:
            for folder in claim_empty_volumes(uid, gid):
                say(f"{folder} was an empty volume owned by root: gave it to {uid}:{gid}")
            drop_privileges(uid, gid, argv)  # does not return
        if os.getpid() == 1:  # started as a user (`--user`): tini still comes first
            os.execvp("tini", again(argv))
        os.umask(mask)
        if not os.access(os.environ.get("HOME") or "/", os.W_OK):
            os.environ["HOME"] = "/tmp"  # root's /root, after setpriv
        prepare(argv, os.environ)
    except StartError as exc:
        say(str(exc))
        return 2
    hushdrop = Path(sys.executable).parent / "hushdrop"
    os.execv(hushdrop, [str(hushdrop), *argv])
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
