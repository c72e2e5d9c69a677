"""The configuration's typed model: every key of the config file with its type and its range.

Pydantic v2 models in strict mode: a value of the wrong type is refused, never coerced
("false" is not a boolean, "5" is not a number; a whole number is accepted where any number
belongs), an unknown key or section is refused, and a value outside its range is refused.
`ConfigFile` is the file as written; `Config` is what the rest of the toolkit uses. The
settings models are frozen, and are checked the same way when code builds them directly.
How a refusal is worded for people is in `messages`, not here.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from civimc_audit.common.codes import OUTCOME_CODES
from civimc_audit.config.environment import (
    API_KEY_RE,
    ENV_CIVICRM_PASSWORD,
    ENV_CIVICRM_WRITE_PASSWORD,
    ENV_MAILCHIMP_API_KEY,
)
from civimc_audit.errors import ConfigError

STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)


def _known_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise PydanticCustomError("time_zone", "unknown time zone") from None
    return name


MAILCHIMP_HOST_RE = re.compile(r"^([a-z]+[0-9]+)\.api\.mailchimp\.com$")


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _api_root(url: str) -> str:
    """The API key is sent to `base_url`: only Mailchimp's own host over https, or this machine
    (the emulator), may have it."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - a malformed port raises here
    except ValueError:
        raise PydanticCustomError("api_root", "not a URL") from None
    if parts.username or parts.password:
        raise PydanticCustomError("api_root", "credentials in the URL")
    if is_loopback(host) or (parts.scheme == "https" and MAILCHIMP_HOST_RE.match(host)):
        return url
    raise PydanticCustomError("api_root", "not Mailchimp's host or this machine")


def _list_as_tuple(value):
    """TOML arrays arrive as lists; the frozen settings keep tuples (anything else is refused)."""
    return tuple(value) if isinstance(value, list) else value


Outcome = Literal[OUTCOME_CODES]  # type: ignore[valid-type]  # the codes' tuple, unpacked at run time
InterestId = Annotated[str, Field(pattern=r"^[0-9a-f]{10}$")]
GroupId = Annotated[int, Field(ge=1)]


class CiviCRMSettings(BaseModel):
    """Where the CiviCRM database is and which group to audit."""

    model_config = STRICT

    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(3306, ge=1, le=65535)
    socket: str | None = Field(None, min_length=1)
    database: str = Field("civicrm", min_length=1)
    user: str = Field("civimc_reader", min_length=1)
    write_user: str | None = Field(None, min_length=1)
    group_id: int | None = Field(None, ge=1)
    group_name: str | None = Field(None, min_length=1)
    timezone: Annotated[str, AfterValidator(_known_zone)] | None = Field(
        None, description='an IANA time zone name in quotes, such as "Europe/London"')
    on_hold_when_cleaned: bool = False

    @property
    def password(self) -> str:
        return os.environ.get(ENV_CIVICRM_PASSWORD, "")

    @property
    def write_password(self) -> str:
        return os.environ.get(ENV_CIVICRM_WRITE_PASSWORD, "")


class MailchimpSettings(BaseModel):
    """Which audience to audit and how to reach the API."""

    model_config = STRICT

    list_id: str = Field("", pattern=r"^[0-9A-Za-z]{1,64}$", description=(
        'the audience id in quotes, letters and digits as Mailchimp shows it, such as "a1b2c3d4e5"'))
    base_url: Annotated[str, AfterValidator(_api_root)] | None = Field(
        None, pattern=r"^https?://[^\s/]+\S*$", description=(
            "a URL in quotes starting with http:// or https://, either "
            "https://<dc>.api.mailchimp.com/3.0 or an address on this machine (127.0.0.1, ::1 "
            'or localhost) such as "http://127.0.0.1:8765/3.0": the API key is sent there, so '
            "no other host is accepted"))
    max_connections: int = Field(5, ge=1, le=10)  # Mailchimp allows 10 simultaneous connections
    timeout: float = Field(120.0, gt=0, allow_inf_nan=False)
    retries: int = Field(6, ge=0)

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
        """The API root: the configured override, else the key's data centre. A Mailchimp
        host in the override must be the key's data centre's (the key goes only there)."""
        key = API_KEY_RE.match(self.api_key)
        assert key is not None, "the key's format is checked by api_key"
        dc = key.group(1)
        if self.base_url:
            named = MAILCHIMP_HOST_RE.match((urlsplit(self.base_url).hostname or "").lower())
            if named and named.group(1) != dc:
                raise ConfigError(f"[mailchimp] base_url {self.base_url} is data centre "
                                  f"{named.group(1)}, but the API key in {ENV_MAILCHIMP_API_KEY} "
                                  f"is for {dc}; the key is sent only to its own data centre")
            return self.base_url.rstrip("/")
        return f"https://{dc}.api.mailchimp.com/3.0"


class PolicySettings(BaseModel):
    """Options that change outcomes; all off by default so the default predicts the sync."""

    model_config = STRICT

    honor_civicrm_consent: bool = False
    tie_winner: Literal["civicrm", "mailchimp"] = "civicrm"
    # Which Mailchimp date decides against CiviCRM's where the activity feed shows a profile
    # edit made last_changed "later" (docs/design.md "Date evidence"): the sync's last_changed,
    # or the member's last change of status.
    date_basis: Literal["last_changed", "status_change"] = "last_changed"


class ScheduleSettings(BaseModel):
    """Thresholds and retention for scheduled `run`s."""

    model_config = STRICT

    max_removals: int | None = Field(None, ge=0)
    max_removal_percent: float | None = Field(None, ge=0, le=100, allow_inf_nan=False)
    fail_on_cannot_sync: bool = False
    # Interest rows that take someone out of a mapped group or clear their interest (I4, I6).
    max_interest_removals: int | None = Field(None, ge=0)
    max_snapshot_age_hours: float | None = Field(None, gt=0, allow_inf_nan=False)
    keep_runs_days: float | None = Field(None, gt=0, allow_inf_nan=False)
    auto_approve: Annotated[tuple[Outcome, ...], BeforeValidator(_list_as_tuple)] = Field(
        (), description="a list of outcome codes in brackets, such as [\"add_to_mailchimp\"]; "
                        f"the codes: {', '.join(OUTCOME_CODES)}")
    # Ignored (the run lock never goes stale); kept so older configs still load.
    lock_stale_hours: float = Field(12.0, gt=0, allow_inf_nan=False)


class StoreSettings(BaseModel):
    """Where the audit store and the run folders are (relative to the config file's folder)."""

    model_config = STRICT

    path: str = Field("data/audit.duckdb", min_length=1)
    runs_dir: str = Field("data/runs", min_length=1)
    # How long a command that writes to the store waits for another one to finish (store/lock.py).
    lock_wait_seconds: float = Field(30.0, ge=0, le=86400, allow_inf_nan=False)


def _rule(section: str, keys: tuple[str, ...], text: str) -> PydanticCustomError:
    """A refusal that concerns several keys of a section together (worded in `text`)."""
    return PydanticCustomError("config_rule", "{text}",
                               {"section": section, "keys": keys, "text": text})


class ConfigFile(BaseModel):
    """The config file as written: its sections, and the rules between keys."""

    model_config = STRICT

    civicrm: CiviCRMSettings = Field(default_factory=CiviCRMSettings)
    mailchimp: MailchimpSettings = Field(default_factory=MailchimpSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    interests: dict[InterestId, GroupId] = Field(default_factory=dict, description=(
        "a table of Mailchimp interest id (10 hex digits in lower case, such as \"9f8e7d6c5b\") "
        "= CiviCRM group id (a whole number, 1 or more)"))

    @model_validator(mode="after")
    def _together(self) -> ConfigFile:
        civi = self.civicrm
        if civi.group_id is None and civi.group_name is None:
            raise _rule("civicrm", (), "needs group_id (a whole number, 1 or more) or group_name")
        if civi.group_id is not None and civi.group_name is not None:
            raise _rule("civicrm", ("group_id", "group_name"),
                        "give group_id or group_name, not both")
        tcp = tuple(k for k in ("host", "port") if k in civi.model_fields_set)
        if civi.socket is not None and tcp:
            raise _rule("civicrm", ("socket", *tcp), f"give socket or {' and '.join(tcp)}, not "
                        "both (a socket connects locally; host and port connect over TCP)")
        if not self.mailchimp.list_id:
            raise _rule("mailchimp", (), 'needs list_id (the audience id, such as "a1b2c3d4e5")')
        self._one_interest_per_group()
        return self

    def _one_interest_per_group(self) -> None:
        seen: dict[int, str] = {}
        for interest, group in self.interests.items():
            if group in seen:
                raise _rule("interests", (seen[group], interest),
                            f"CiviCRM group {group} is mapped to two interests; "
                            "each group maps to one interest")
            seen[group] = interest


@dataclass(frozen=True)
class Config:
    """The whole configuration; `base_dir` anchors relative paths (the config file's folder)."""

    civicrm: CiviCRMSettings = field(default_factory=CiviCRMSettings)
    mailchimp: MailchimpSettings = field(default_factory=MailchimpSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    store_path: str = "data/audit.duckdb"
    runs_dir: str = "data/runs"
    lock_wait_seconds: float = 30.0
    base_dir: Path = field(default_factory=Path.cwd)
    source: Path | None = None
    # Mailchimp interest id → CiviCRM group id ([interests]): rules I1–I6.
    interests: dict[str, int] = field(default_factory=dict, hash=False)

    @property
    def store_file(self) -> Path:
        return _anchor(self.base_dir, self.store_path)

    @property
    def runs_path(self) -> Path:
        return _anchor(self.base_dir, self.runs_dir)

    @classmethod
    def from_file(cls, checked: ConfigFile, base_dir: Path, source: Path | None) -> Config:
        return cls(civicrm=checked.civicrm, mailchimp=checked.mailchimp, policy=checked.policy,
                   schedule=checked.schedule, store_path=checked.store.path,
                   runs_dir=checked.store.runs_dir,
                   lock_wait_seconds=checked.store.lock_wait_seconds, base_dir=base_dir,
                   source=source,
                   interests=dict(checked.interests))


def _anchor(base: Path, p: str) -> Path:
    path = Path(p).expanduser()
    return path if path.is_absolute() else base / path
