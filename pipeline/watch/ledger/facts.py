"""The ``service`` table: facts the coordinator publishes about itself (heartbeat, workers, model,
intake problems) for ``hushdrop status`` and the web page, one JSON value per key."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hushdrop.pipeline.watch.ledger.store import Ledger


class ServiceFacts:
    """``ledger.facts``: set some keys, or read them all."""

    def __init__(self, ledger: "Ledger"):
        self._ledger = ledger

    def set(self, **values: Any) -> None:
        with self._ledger._tx() as db:
            for key, value in values.items():
                db.execute(
                    "INSERT INTO service (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, json.dumps(value)),
                )

    def all(self) -> dict[str, Any]:
        return {r["key"]: json.loads(r["value"]) for r in self._ledger._read("SELECT key, value FROM service")}
