"""civimc-audit: audit, review and apply the reconciliation of a CiviCRM group with a Mailchimp audience."""

__version__ = "0.1.0"
