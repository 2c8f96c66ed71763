"""The ledger: the SQLite file that holds every job, and the one job state machine.

- ``jobs``: a job's states, the transitions allowed between them, and its row;
- ``store``: :class:`Ledger`, the open file, whose own methods are the job table's;
- ``uploads``, ``facts``: the faces of the page's ``uploads`` table and the service's facts
  (``ledger.uploads``, ``ledger.facts``);
- ``schema``: the tables, and the migrations an older file is brought forward by.
"""

from hushdrop.pipeline.watch.ledger.jobs import (
    ACTIVE,
    STATES,
    TERMINAL,
    TRANSITIONS,
    WAITING,
    JobRow,
    State,
    TransitionError,
)
from hushdrop.pipeline.watch.ledger.schema import LedgerTooNew
from hushdrop.pipeline.watch.ledger.store import Ledger, LedgerCorrupt, is_corruption
from hushdrop.pipeline.watch.ledger.uploads import Priority, UploadNote

__all__ = [
    "ACTIVE",
    "STATES",
    "TERMINAL",
    "TRANSITIONS",
    "WAITING",
    "JobRow",
    "Ledger",
    "LedgerCorrupt",
    "LedgerTooNew",
    "Priority",
    "State",
    "TransitionError",
    "UploadNote",
    "is_corruption",
]
