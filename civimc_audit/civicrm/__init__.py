"""CiviCRM side: connections, the read-only snapshot, the writer and the fixture schema."""
