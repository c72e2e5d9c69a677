"""What comes from the environment: the secrets (never from a config file) and their redaction.

Secrets (database passwords, the Mailchimp API key) come only from the environment, so a config
file can be committed, shared and passed to papermill without leaking anything.
"""

from __future__ import annotations

import os
import re

CONFIG_ENV = "CIVIMC_CONFIG"
DEFAULT_CONFIG_NAME = "civimc-audit.toml"
ENV_CIVICRM_PASSWORD = "CIVIMC_CIVICRM_PASSWORD"
ENV_CIVICRM_WRITE_PASSWORD = "CIVIMC_CIVICRM_WRITE_PASSWORD"
ENV_MAILCHIMP_API_KEY = "CIVIMC_MAILCHIMP_API_KEY"

API_KEY_RE = re.compile(r"^[0-9a-f]{32}-([a-z]+[0-9]+)$")

# Config keys people write when they mean a secret, and where that secret goes instead.
SECRET_KEYS = {"password": ENV_CIVICRM_PASSWORD, "write_password": ENV_CIVICRM_WRITE_PASSWORD,
               "api_key": ENV_MAILCHIMP_API_KEY, "apikey": ENV_MAILCHIMP_API_KEY}
# An unknown key whose name looks like this may hold a secret: its value is never shown.
SECRETISH_KEY_RE = re.compile(r"pass|secret|token|key", re.IGNORECASE)


def redact(text: str) -> str:
    """Remove secret values from text that is about to be written or shown."""
    for var in (ENV_MAILCHIMP_API_KEY, ENV_CIVICRM_PASSWORD, ENV_CIVICRM_WRITE_PASSWORD):
        secret = os.environ.get(var, "").strip()
        if len(secret) >= 4:
            text = text.replace(secret, "***")
            if var == ENV_MAILCHIMP_API_KEY:
                text = text.replace(secret.split("-")[0], "***")
    return text


def one_line(text: object) -> str:
    """`text` as one line fit to show or record: whitespace runs collapsed, secrets redacted."""
    return " ".join(redact(str(text)).split())
