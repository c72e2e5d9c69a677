"""Settings from a TOML file plus the environment, checked when they are loaded.

Every key has a type and a range (`settings`); a wrong one is refused before anything runs,
with one line naming the file, the section, the key, the value and what is allowed (`messages`;
a ConfigError, exit 2). Secrets (database passwords, the Mailchimp API key) come only from the
environment (`environment`), so a config file can be committed, shared and passed to papermill
without leaking anything.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from pydantic import ValidationError

from civimc_audit.config.environment import (
    API_KEY_RE,
    CONFIG_ENV,
    DEFAULT_CONFIG_NAME,
    ENV_CIVICRM_PASSWORD,
    ENV_CIVICRM_WRITE_PASSWORD,
    ENV_MAILCHIMP_API_KEY,
    one_line,
    redact,
)
from civimc_audit.config.messages import describe
from civimc_audit.config.settings import (
    CiviCRMSettings,
    Config,
    ConfigFile,
    MailchimpSettings,
    PolicySettings,
    ScheduleSettings,
    StoreSettings,
)
from civimc_audit.errors import ConfigError

__all__ = [
    "API_KEY_RE", "CONFIG_ENV", "DEFAULT_CONFIG_NAME", "ENV_CIVICRM_PASSWORD",
    "ENV_CIVICRM_WRITE_PASSWORD", "ENV_MAILCHIMP_API_KEY", "CiviCRMSettings", "Config",
    "MailchimpSettings", "PolicySettings", "ScheduleSettings", "StoreSettings", "config_from_dict",
    "find_config_path", "load_config", "one_line", "redact", "CLI_CONFIG_HINT",
    "NOTEBOOK_CONFIG_HINT", "project_config",
]


CLI_CONFIG_HINT = "pass --config PATH"
NOTEBOOK_CONFIG_HINT = ("set config_path in the notebook's first cell to the file's path, or set "
                        f"the environment variable {CONFIG_ENV}")
PROJECT_MARKERS = ("pyproject.toml", ".git")


def find_config_path(explicit: str | os.PathLike | None = None, *,
                     hint: str = CLI_CONFIG_HINT) -> Path:
    """The config file to use: the one named (--config, or a notebook's config_path), else
    $CIVIMC_CONFIG, else ./civimc-audit.toml, else civimc-audit.toml in the project root (the
    nearest folder above the working directory with a pyproject.toml or .git), so a notebook
    opened in notebooks/ finds the same file as the CLI run from the project. `hint` says how
    to name the file where it is not found (the CLI's flag, or the notebook's words)."""
    candidate = explicit or os.environ.get(CONFIG_ENV)
    path = (Path(candidate).expanduser() if candidate
            else project_config() or Path(DEFAULT_CONFIG_NAME))
    if not path.is_file():
        how = ("as named" if explicit else f"from {CONFIG_ENV}" if os.environ.get(CONFIG_ENV)
               else "in the working directory or the project root")
        raise ConfigError(f"config file not found: {path} ({how}); "
                          f"create {DEFAULT_CONFIG_NAME} or {hint}")
    return path


def project_config(start: Path | None = None) -> Path | None:
    """./civimc-audit.toml, else the one in the project root above `start` (the working
    directory), else None."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / DEFAULT_CONFIG_NAME).is_file():
            return folder / DEFAULT_CONFIG_NAME
        if any((folder / marker).exists() for marker in PROJECT_MARKERS):
            return None
    return None


def load_config(path: str | os.PathLike | None = None, *, hint: str = CLI_CONFIG_HINT) -> Config:
    """Read and check the configuration (see README for every key); `hint` as in
    find_config_path."""
    p = find_config_path(path, hint=hint).resolve()
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text (save the config file as UTF-8)") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot be read: {exc.strerror or exc}") from None
    return config_from_dict(data, base_dir=p.parent, source=p)


def config_from_dict(data: dict, base_dir: Path | None = None, source: Path | None = None) -> Config:
    """Check parsed TOML and build the Config from it (also used by tests and the demo)."""
    try:
        checked = ConfigFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc, data, source)) from None
    return Config.from_file(checked, base_dir or Path.cwd(), source)
