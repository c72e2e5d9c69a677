"""Connections to the CiviCRM database.

Every connection runs with session time_zone '+00:00' so TIMESTAMP columns (subscription history
dates) arrive as UTC whatever the server's or CiviCRM's own time zone is.
"""

from __future__ import annotations

import re

import pymysql
import pymysql.cursors

from civimc_audit.config import ENV_CIVICRM_PASSWORD, ENV_CIVICRM_WRITE_PASSWORD, CiviCRMSettings
from civimc_audit.errors import CiviCRMError, ConfigError

# Server-side errors that mean the connection is gone; the work can simply be rerun.
CONNECTION_LOST = {2006, 2013, 2055, 1927, 1053}
LOCK_WAIT_TIMEOUT = 1205
DENIED = {1142, 1143, 1044, 1227, 1370}


def connect(settings: CiviCRMSettings, *, write: bool = False, database: str | None = None,
            **kwargs) -> pymysql.connections.Connection:
    """Open a connection as the read-only user, or the write user when `write` is set.

    Writing needs its own account (`write_user`, password in CIVIMC_CIVICRM_WRITE_PASSWORD), so
    the snapshot account can stay SELECT-only.
    """
    if write and not settings.write_user:
        raise ConfigError("[civicrm] write_user is not set: applying changes needs its own "
                          "account (password in CIVIMC_CIVICRM_WRITE_PASSWORD)")
    user = settings.write_user if write else settings.user
    password = settings.write_password if write else settings.password
    where = settings.socket or f"{settings.host}:{settings.port}"
    params = dict(
        user=user,
        password=password,
        database=database if database is not None else settings.database,
        charset="utf8mb4",
        autocommit=not write,
        init_command="SET time_zone = '+00:00'",
        connect_timeout=10,
        **kwargs,
    )
    if settings.socket:
        params["unix_socket"] = settings.socket
    else:
        params["host"] = settings.host
        params["port"] = settings.port
    try:
        return pymysql.connect(**params)
    except pymysql.err.OperationalError as exc:
        code = exc.args[0] if exc.args else None
        msg = exc.args[1] if len(exc.args) > 1 else str(exc)
        if code == 1045 and not password:
            # Tried without a password (it may be meant: the server decides); say what to set.
            var = ENV_CIVICRM_WRITE_PASSWORD if write else ENV_CIVICRM_PASSWORD
            hint = f"access denied for user '{user}' without a password: set {var}"
        elif code == 1045:
            hint = ("access denied for user "
                    f"'{user}' (check the {'write_user' if write else 'user'} and its password "
                    "in the environment)")
        elif code == 1049:
            hint = f"database '{params['database']}' does not exist"
        elif code in (2003, 2002, 2005, 2013):
            hint = "cannot reach the server (is MariaDB/MySQL running and is host/port right?)"
        else:
            hint = msg
        raise CiviCRMError(f"CiviCRM database at {where}: {hint}",
                           misconfigured=code in (1045, 1049)) from None


def describe_error(exc: pymysql.err.MySQLError, user: str) -> str:
    """One line for a server error: what failed and what to do, never the password."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    msg = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    if code in CONNECTION_LOST or isinstance(exc, pymysql.err.InterfaceError):
        return f"lost the connection to the server ({msg})"
    if code == LOCK_WAIT_TIMEOUT:
        return f"lock wait timeout ({msg}): another session holds a lock"
    if code in DENIED:
        denied = re.match(r"(\w+) command denied to user '([^']*)'@'[^']*' for table [`']?([\w.`]+)",
                          msg)
        if denied:
            priv, table = denied.group(1), denied.group(3).replace("`", "").split(".")[-1]
            return (f"user '{user}' lacks the {priv} privilege on {table} "
                    f"(GRANT {priv} ON {table} TO '{user}')")
        return f"user '{user}' lacks a privilege: {msg}"
    return msg
