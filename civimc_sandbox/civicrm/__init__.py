"""A CiviCRM database for the demo and the tests: the schema and a fixture writer."""
