"""CiviCRM side: connections, the read-only snapshot and the writer."""
