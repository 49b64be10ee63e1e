"""settle batch commits without waiting for the WAL flush

A settle batch locks the budget rows it charges from its first UPDATE until its commit, and a
synchronous commit holds them through a WAL flush (a disk sync: about 0.15 ms on the test
machine, often a millisecond or more on network disks). Every reservation on those budgets
waits that long. The settle batch now commits with synchronous_commit off, set for its own
transaction only; reservations still commit synchronously.

Nothing can be under-billed by it. If PostgreSQL crashes before the batch's commit reaches
disk, the whole transaction is lost together: its leases are back, and the reaper charges each
at its reserved amount, marked estimated (the same path as a settlement that never ran). And
no decision rests on a lost settlement: a reservation that saw the batch's effects waited for
its locks, so its own synchronous commit comes later in the WAL and flushes the batch with it.

Revision ID: 5e2b8c1d9a47
Revises: c3f1a9d27b54
Create Date: 2026-12-04 02:00:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "5e2b8c1d9a47"
down_revision: str | None = "c3f1a9d27b54"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEGIN = "\nBEGIN\n"
# Local to the transaction: it ends with the batch's commit, and the pooled connection's next
# statement (a reservation) commits synchronously again.
_ASYNC_COMMIT = "\nBEGIN\n    PERFORM set_config('synchronous_commit', 'off', true);\n"


def _previous() -> ModuleType:
    """The revision before this one, whose function text this one extends or restores."""
    path = Path(__file__).with_name("2026-12-01-2030_usage_request_ids.py")
    spec = importlib.util.spec_from_file_location("_usage_request_ids", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def settle_batch_sql() -> str:
    text: str = _previous().settle_batch_sql()
    assert text.count(_BEGIN) == 1
    return text.replace(_BEGIN, _ASYNC_COMMIT)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL lock_timeout = '5s'")
        op.execute(settle_batch_sql())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL lock_timeout = '5s'")
        op.execute(_previous().settle_batch_sql())
