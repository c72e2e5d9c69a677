"""Settings from a TOML file plus the environment.

Secrets (database passwords, the Mailchimp API key) come only from the environment, so a config
file can be committed, shared and passed to papermill without leaking anything.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from civimc_audit.common.codes import OUTCOME_CODES
from civimc_audit.errors import ConfigError

CONFIG_ENV = "CIVIMC_CONFIG"
DEFAULT_CONFIG_NAME = "civimc-audit.toml"
ENV_CIVICRM_PASSWORD = "CIVIMC_CIVICRM_PASSWORD"
ENV_CIVICRM_WRITE_PASSWORD = "CIVIMC_CIVICRM_WRITE_PASSWORD"
ENV_MAILCHIMP_API_KEY = "CIVIMC_MAILCHIMP_API_KEY"

API_KEY_RE = re.compile(r"^[0-9a-f]{32}-([a-z]+[0-9]+)$")


def redact(text: str) -> str:
    """Remove secret values from text that is about to be written or shown."""
    for var in (ENV_MAILCHIMP_API_KEY, ENV_CIVICRM_PASSWORD, ENV_CIVICRM_WRITE_PASSWORD):
        secret = os.environ.get(var, "").strip()
        if len(secret) >= 4:
            text = text.replace(secret, "***")
            if var == ENV_MAILCHIMP_API_KEY:
                text = text.replace(secret.split("-")[0], "***")
    return text


@dataclass(frozen=True)
class CiviCRMSettings:
    """Where the CiviCRM database is and which group to audit."""

    host: str = "127.0.0.1"
    port: int = 3306
    socket: str | None = None
    database: str = "civicrm"
    user: str = "civimc_reader"
    write_user: str | None = None
    group_id: int | None = None
    group_name: str | None = None
    timezone: str | None = None
    on_hold_when_cleaned: bool = False

    @property
    def password(self) -> str:
        return os.environ.get(ENV_CIVICRM_PASSWORD, "")

    @property
    def write_password(self) -> str:
        return os.environ.get(ENV_CIVICRM_WRITE_PASSWORD, "")


@dataclass(frozen=True)
class MailchimpSettings:
    """Which audience to audit and how to reach the API."""

    list_id: str = ""
    base_url: str | None = None
    max_connections: int = 5
    timeout: float = 120.0
    retries: int = 6

    @property
    def api_key(self) -> str:
        key = os.environ.get(ENV_MAILCHIMP_API_KEY, "").strip()
        if not key:
            raise ConfigError(f"Mailchimp API key missing: set {ENV_MAILCHIMP_API_KEY}")
        if not API_KEY_RE.match(key):
            raise ConfigError(
                f"Mailchimp API key in {ENV_MAILCHIMP_API_KEY} is malformed: "
                "expected 32 hex characters, a dash and a data centre such as us6"
            )
        return key

    @property
    def url(self) -> str:
        """The API root: the configured override, else the key's data centre."""
        if self.base_url:
            return self.base_url.rstrip("/")
        dc = API_KEY_RE.match(self.api_key).group(1)
        return f"https://{dc}.api.mailchimp.com/3.0"


@dataclass(frozen=True)
class PolicySettings:
    """Options that change outcomes; all off by default so the default predicts the sync."""

    honor_civicrm_consent: bool = False
    tie_winner: str = "civicrm"


@dataclass(frozen=True)
class ScheduleSettings:
    """Thresholds and retention for scheduled `run`s."""

    max_removals: int | None = None
    max_removal_percent: float | None = None
    fail_on_cannot_sync: bool = False
    max_snapshot_age_hours: float | None = None
    keep_runs_days: float | None = None
    auto_approve: tuple[str, ...] = ()
    lock_stale_hours: float = 12.0  # ignored (the run lock never goes stale); old configs load


@dataclass(frozen=True)
class Config:
    """The whole configuration; `base_dir` anchors relative paths (the config file's folder)."""

    civicrm: CiviCRMSettings = field(default_factory=CiviCRMSettings)
    mailchimp: MailchimpSettings = field(default_factory=MailchimpSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    store_path: str = "data/audit.duckdb"
    runs_dir: str = "data/runs"
    base_dir: Path = field(default_factory=Path.cwd)
    source: Path | None = None

    @property
    def store_file(self) -> Path:
        return _anchor(self.base_dir, self.store_path)

    @property
    def runs_path(self) -> Path:
        return _anchor(self.base_dir, self.runs_dir)


def _anchor(base: Path, p: str) -> Path:
    path = Path(p).expanduser()
    return path if path.is_absolute() else base / path


def _section(cls, data: dict, name: str):
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"unknown key(s) in [{name}]: {', '.join(sorted(unknown))}")
    secretish = {"password", "api_key", "write_password", "apikey"} & set(data)
    if secretish:
        raise ConfigError(f"[{name}] must not hold secrets ({', '.join(sorted(secretish))}); "
                          "set them in the environment instead")
    values = {}
    for key, value in data.items():
        if key == "auto_approve":
            if not isinstance(value, list) or any(v not in OUTCOME_CODES for v in value):
                raise ConfigError(f"[{name}] auto_approve must be a list of outcome codes "
                                  f"({', '.join(OUTCOME_CODES)})")
            value = tuple(value)
        values[key] = value
    return cls(**values)


def find_config_path(explicit: str | os.PathLike | None = None) -> Path:
    """The config file to use: --config, else $CIVIMC_CONFIG, else ./civimc-audit.toml."""
    candidate = explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_NAME
    path = Path(candidate).expanduser()
    if not path.is_file():
        how = "--config" if explicit else (CONFIG_ENV if os.environ.get(CONFIG_ENV) else "default")
        raise ConfigError(f"config file not found: {path} ({how}); "
                          f"create {DEFAULT_CONFIG_NAME} or pass --config PATH")
    return path


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read and validate the configuration (see README for every key)."""
    p = find_config_path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
    return config_from_dict(data, base_dir=p.resolve().parent, source=p.resolve())


def config_from_dict(data: dict, base_dir: Path | None = None, source: Path | None = None) -> Config:
    """Build a Config from parsed TOML (also used by tests and the demo)."""
    allowed = {"civicrm", "mailchimp", "store", "schedule", "policy"}
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(f"unknown section(s) in config: {', '.join(sorted(unknown))}")
    civi = _section(CiviCRMSettings, data.get("civicrm", {}), "civicrm")
    if civi.group_id is None and not civi.group_name:
        raise ConfigError("[civicrm] needs group_id or group_name")
    mc = _section(MailchimpSettings, data.get("mailchimp", {}), "mailchimp")
    if not mc.list_id:
        raise ConfigError("[mailchimp] needs list_id")
    if not 1 <= mc.max_connections <= 10:
        raise ConfigError("[mailchimp] max_connections must be between 1 and 10 "
                          "(Mailchimp allows 10 simultaneous connections)")
    policy = _section(PolicySettings, data.get("policy", {}), "policy")
    if policy.tie_winner not in ("civicrm", "mailchimp"):
        raise ConfigError("[policy] tie_winner must be \"civicrm\" or \"mailchimp\"")
    schedule = _section(ScheduleSettings, data.get("schedule", {}), "schedule")
    store = data.get("store", {})
    unknown_store = set(store) - {"path", "runs_dir"}
    if unknown_store:
        raise ConfigError(f"unknown key(s) in [store]: {', '.join(sorted(unknown_store))}")
    return Config(
        civicrm=civi,
        mailchimp=mc,
        policy=policy,
        schedule=schedule,
        store_path=store.get("path", "data/audit.duckdb"),
        runs_dir=store.get("runs_dir", "data/runs"),
        base_dir=base_dir or Path.cwd(),
        source=source,
    )
