"""Scheduled runs: the pipeline behind `civimc-audit run`, its run folders and summary.json,
retention and the runs index page (runs are kept apart by the store's writer lock)."""
