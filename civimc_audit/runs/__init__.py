"""Scheduled runs: the pipeline behind `civimc-audit run`, its run folders and summary.json,
the lock that keeps runs apart, retention and the runs index page."""
