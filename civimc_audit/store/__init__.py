"""The audit store: one DuckDB file holding snapshots, reconciliations, plans and the journal."""

from civimc_audit.store.database import SNAPSHOT_TABLES, Snapshot, Store, open_store, scalar

__all__ = ["SNAPSHOT_TABLES", "Snapshot", "Store", "open_store", "scalar"]
