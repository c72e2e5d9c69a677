"""Connections to the CiviCRM database.

Every connection runs with session time_zone '+00:00' so TIMESTAMP columns (subscription history
dates) arrive as UTC whatever the server's or CiviCRM's own time zone is.
"""

from __future__ import annotations

import pymysql
import pymysql.cursors

from ..config import CiviCRMSettings
from ..errors import CiviCRMError


def connect(settings: CiviCRMSettings, *, write: bool = False, database: str | None = None,
            **kwargs) -> pymysql.connections.Connection:
    """Open a connection as the read-only user, or the write user when `write` is set."""
    user = (settings.write_user or settings.user) if write else settings.user
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
        if code == 1045:
            hint = ("access denied for user "
                    f"'{user}' (check the {'write_user' if write else 'user'} and its password "
                    "in the environment)")
        elif code == 1049:
            hint = f"database '{params['database']}' does not exist"
        elif code in (2003, 2002, 2005, 2013):
            hint = "cannot reach the server (is MariaDB/MySQL running and is host/port right?)"
        else:
            hint = msg
        raise CiviCRMError(f"CiviCRM database at {where}: {hint}") from None
