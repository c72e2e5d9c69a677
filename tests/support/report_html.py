"""Reading the audit report's HTML in tests: the rows of its sortable tables (itables keeps them
as JSON in the page, each cell HTML-escaped)."""

from __future__ import annotations

import html
import json
import re

DATA_JSON = re.compile(r'"data_json": ("(?:[^"\\]|\\.)*")')


def table_rows(page: str, columns: int | None = None) -> list[list[str]]:
    """Every row of every interactive table on the page, cells unescaped to their text (only
    tables of `columns` columns when given)."""
    rows = []
    for match in DATA_JSON.finditer(page):
        for row in json.loads(json.loads(match.group(1))):
            if columns is None or len(row) == columns:
                rows.append([html.unescape(str(cell)) for cell in row])
    return rows


def people_rows(page: str) -> list[dict[str, str]]:
    """The people table's rows as dicts by heading (Who, Email, …, Why, Flags)."""
    from civimc_audit.report.words import PEOPLE_COLUMNS

    return [dict(zip(PEOPLE_COLUMNS, row, strict=True))
            for row in table_rows(page, len(PEOPLE_COLUMNS))]
