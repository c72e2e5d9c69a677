"""What the CiviCRM tables look like on this site, read from information_schema.

CiviCRM databases were installed years apart and upgraded in place, so column presence, types and
nullability differ (nullable group names before 5.65, DATETIME history dates on old sites,
tinyint(4) booleans, utf8 vs utf8mb4, no cache_fill_took/frontend_title...). Reader and writer
ask this module instead of assuming.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from civimc_audit.config import CiviCRMSettings
from civimc_audit.errors import CiviCRMError, ConfigError

TABLES = ("civicrm_group", "civicrm_group_contact", "civicrm_subscription_history",
          "civicrm_contact", "civicrm_email", "civicrm_location_type")


@dataclass(frozen=True)
class Column:
    """One column as information_schema describes it."""

    name: str
    data_type: str          # e.g. 'int', 'varchar', 'timestamp', 'datetime', 'enum'
    column_type: str        # e.g. 'tinyint(4)', 'int(10) unsigned'
    nullable: bool
    charset: str | None

    @property
    def is_text(self) -> bool:
        return self.data_type in ("char", "varchar", "text", "tinytext", "mediumtext", "longtext",
                                  "enum", "set")


class Schema:
    """Columns per table for the CiviCRM tables this toolkit touches."""

    def __init__(self, columns: dict[str, dict[str, Column]],
                 indexes: dict[str, dict[str, str]] | None = None):
        self.columns = columns
        self.indexes = indexes or {}  # table → first column → an index name starting with it

    @classmethod
    def read(cls, cur, database: str) -> Schema:
        cur.execute(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE,"
            " CHARACTER_SET_NAME FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA = %s AND TABLE_NAME IN %s ORDER BY ORDINAL_POSITION",
            (database, TABLES))
        columns: dict[str, dict[str, Column]] = {}
        for table, name, dtype, ctype, nullable, charset in cur.fetchall():
            columns.setdefault(_text(table), {})[_text(name).lower()] = Column(
                _text(name), _text(dtype).lower(), _text(ctype).lower(), _text(nullable) == "YES",
                _text(charset) if charset else None)
        cur.execute(
            "SELECT TABLE_NAME, COLUMN_NAME, INDEX_NAME FROM information_schema.STATISTICS"
            " WHERE TABLE_SCHEMA = %s AND TABLE_NAME IN %s AND SEQ_IN_INDEX = 1"
            " ORDER BY NON_UNIQUE, INDEX_NAME", (database, TABLES))
        indexes: dict[str, dict[str, str]] = {}
        for table, column, index in cur.fetchall():
            indexes.setdefault(_text(table), {}).setdefault(_text(column).lower(), _text(index))
        return cls(columns, indexes)

    def index_on(self, table: str, column: str) -> str | None:
        """The name of an index whose first column is `column`, if the table has one."""
        return self.indexes.get(table, {}).get(column)

    def require(self, table: str, *needed: str) -> dict[str, Column]:
        """The table's columns; a CiviCRMError if the table or a needed column is missing."""
        cols = self.columns.get(table)
        if cols is None:
            raise CiviCRMError(f"table {table} not found (or not readable by this account): "
                               "is this a CiviCRM database?")
        missing = [c for c in needed if c not in cols]
        if missing:
            raise CiviCRMError(f"table {table} has no column {', '.join(missing)}: "
                               "this CiviCRM schema is not supported")
        return cols

    def has(self, table: str, column: str) -> bool:
        return column in self.columns.get(table, {})

    @property
    def history_date_is_datetime(self) -> bool:
        col = self.columns.get("civicrm_subscription_history", {}).get("date")
        return col is not None and col.data_type == "datetime"


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


def site_zone(settings: CiviCRMSettings) -> ZoneInfo:
    """The `[civicrm] timezone` as a ZoneInfo; a ConfigError when missing or unknown."""
    if not settings.timezone:
        raise ConfigError(
            "civicrm_subscription_history.date is DATETIME on this (older) CiviCRM site, so its "
            "dates are local time: set [civicrm] timezone, e.g. timezone = \"Europe/London\"")
    try:
        return ZoneInfo(settings.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"[civicrm] timezone '{settings.timezone}' is not a known time zone "
                          "(use an IANA name such as \"Europe/London\")") from None


def history_sql_time(schema: Schema, settings: CiviCRMSettings, when_utc: datetime) -> str:
    """`when_utc` as the literal to store in / compare with civicrm_subscription_history.date.

    TIMESTAMP columns take UTC (our sessions run with time_zone '+00:00'); DATETIME columns hold
    the site's local wall-clock time, as CiviCRM writes them with PHP's date('YmdHis').
    """
    if when_utc.tzinfo is None:
        when_utc = when_utc.replace(tzinfo=UTC)
    if schema.history_date_is_datetime:
        when_utc = when_utc.astimezone(site_zone(settings))
    else:
        when_utc = when_utc.astimezone(UTC)
    return when_utc.strftime("%Y-%m-%d %H:%M:%S")


def local_now(settings: CiviCRMSettings) -> str:
    """Now as a DATETIME literal in the site's zone (UTC when none is configured)."""
    zone = site_zone(settings) if settings.timezone else UTC
    return datetime.now(zone).strftime("%Y-%m-%d %H:%M:%S")
