"""Changes: a reconciliation turned into a plan, reviewed, approved and frozen, applied to both
systems exactly once (journal, drift check), then verified."""
