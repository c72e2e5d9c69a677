"""The one normalisation of email addresses, and Mailchimp's member hash of it, in Python and in
DuckDB SQL.

An address is compared, hashed (Mailchimp's member id is the MD5 of the lower-cased address) and
matched after stripping whitespace at both ends and lower-casing. "Whitespace" is every character
Python's `str.isspace` accepts — spaces, tabs, line breaks (\\t \\n \\r \\v \\f), the no-break
space U+00A0 and the other Unicode spaces — so `normalize_email` agrees with a plain
`str.strip()` and with the SQL macro `normalize_email(s)` below. SQL's own `trim()` (DuckDB and
MySQL alike) strips only the space character, which is why SQL must use the macro: an address
stored as "a@x.org\\n" in CiviCRM is the member a@x.org at Mailchimp.
"""

from __future__ import annotations

import hashlib

#: Every character `str.isspace` accepts (29 of them), in code point order. Written out: scanning
#: all 1.1 million code points at import cost every command up to a second at start
#: (tests/common/test_emails.py checks the list against that scan).
WHITESPACE = "".join(chr(c) for c in (
    0x0009, 0x000A, 0x000B, 0x000C, 0x000D, 0x001C, 0x001D, 0x001E, 0x001F, 0x0020, 0x0085,
    0x00A0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008,
    0x2009, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000))

#: The same set as an RE2 character class, for DuckDB's regexp functions.
SQL_WHITESPACE_CLASS = "[" + "".join(f"\\x{{{ord(c):04X}}}" for c in WHITESPACE) + "]"


def strip_email(s: str) -> str:
    """`s` without whitespace at either end (case kept, for display and for sending)."""
    return s.strip(WHITESPACE)


def normalize_email(s: str) -> str:
    """The address as compared and hashed: whitespace stripped at both ends, then lower-cased."""
    return strip_email(s).lower()


def member_hash(email: str) -> str:
    """Mailchimp's subscriber hash (its member id): md5 of the normalised address."""
    return hashlib.md5(normalize_email(email).encode("utf-8")).hexdigest()


#: Whitespace at either end, as a regular expression that DuckDB (RE2) and MariaDB (PCRE) read
#: alike: `REGEXP_REPLACE(email, STRIP_PATTERN, '')` strips an address in SQL.
STRIP_PATTERN = f"^{SQL_WHITESPACE_CLASS}+|{SQL_WHITESPACE_CLASS}+$"


def sql_macros() -> str:
    """DuckDB statements defining the temporary macros `strip_email(s)`, `normalize_email(s)`
    and `member_hash(s)`, which agree with the Python functions of the same names."""
    return (f"CREATE OR REPLACE TEMP MACRO strip_email(s) AS "
            f"regexp_replace(s, '{STRIP_PATTERN}', '', 'g');\n"
            f"CREATE OR REPLACE TEMP MACRO normalize_email(s) AS lower(strip_email(s));\n"
            f"CREATE OR REPLACE TEMP MACRO member_hash(s) AS md5(normalize_email(s));\n")


def install_sql_macros(con) -> None:
    """Define `strip_email`, `normalize_email` and `member_hash` on a DuckDB connection."""
    con.execute(sql_macros())
