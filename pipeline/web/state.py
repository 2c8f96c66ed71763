"""What every middleware and route of the page shares: the settings, a ledger connection, the
search catalog, the session keys, the login limiter and the progress tracker; the API's tokens,
their limiter and its count of each token's jobs."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from hushdrop.pipeline.api.jobs import ApiJobCounter
from hushdrop.pipeline.api.tokens import TokenStore
from hushdrop.pipeline.config import Settings
from hushdrop.pipeline.errors import ConfigError
from hushdrop.pipeline.fsutil import private_dir
from hushdrop.pipeline.watch.ledger import Ledger
from hushdrop.pipeline.web import uploads
from hushdrop.pipeline.web.address import parse_listen, is_loopback, parse_networks
from hushdrop.pipeline.web.catalog import Catalog
from hushdrop.pipeline.web.views import ProgressTracker
from hushdrop.pipeline.web.metrics import LedgerCollector
from hushdrop.pipeline.web.security import SESSION_COOKIE, SESSION_SECONDS, LoginLimiter, Session, SessionSigner, load_key


class WebState:
    """Everything the routes share: the settings, a ledger connection, the catalog, the keys.

    The ledger connection reads; the page's few writes go through
    :mod:`pipeline.watch.page_requests`.
    """

    def __init__(self, settings: Settings, listen: str | None = None, tls: bool | None = None):
        self.settings = settings
        self.listen = listen or settings.web.listen
        self.host, self.port = parse_listen(self.listen)
        self.loopback = is_loopback(self.host)
        self.tls = bool(settings.web.tls_cert) if tls is None else tls
        self.password_hash = settings.web.password_hash
        if not self.loopback and not self.password_hash:
            raise ConfigError(str(settings.source), [
                f"web.listen: {self.listen} is reachable from other machines, so the page needs a password: "
                f"run `hushdrop web --set-password` (or listen on 127.0.0.1)"
            ])
        private_dir(settings.workdir)
        self.ledger = Ledger(settings.ledger_path)
        self.catalog = Catalog(settings.workdir / "web-catalog.sqlite3", self.ledger)
        self.signer = SessionSigner(load_key(settings.workdir / "web-session.key"), self.password_hash)
        self.limiter = LoginLimiter()
        self.tokens = TokenStore(settings)  # the API's
        self.token_limiter = LoginLimiter()  # wrong API tokens, per address, as wrong passwords
        self.api_jobs = ApiJobCounter()
        self.stopping = False  # the server is stopping: an API request still waiting answers 503 in its client's shape
        self.trusted_proxies = parse_networks(settings.web.trusted_proxies)
        self.tracker = ProgressTracker()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(LedgerCollector(settings, self.ledger, self.catalog))
        uploads.sweep_stale(settings)

    def close(self) -> None:
        self.catalog.close()
        self.ledger.close()

    def cookie(self, session: Session, https: bool = False) -> str:
        parts = [
            f"{SESSION_COOKIE}={self.signer.dump(session)}", "Path=/", "HttpOnly", "SameSite=Strict",
            f"Max-Age={SESSION_SECONDS}",
        ]
        if self.tls or https:
            parts.append("Secure")
        return "; ".join(parts)
