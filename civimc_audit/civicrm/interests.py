"""The CiviCRM groups that `[interests]` maps Mailchimp interests to.

Each must exist and be a normal (static) group: a smart group is refused as the subscription
group is, since the sync cannot add people to one (and its members are computed, not stored).
"""

from __future__ import annotations

from civimc_audit.civicrm.columns import Schema
from civimc_audit.civicrm.reader import GROUP_COLUMNS, GroupInfo
from civimc_audit.errors import ConfigError


def find_mapped_groups(cur, database: str, interests: dict[str, int],
                       schema: Schema | None = None) -> dict[int, GroupInfo]:
    """Group id → GroupInfo for every group `interests` maps to; raises ConfigError naming the
    first one that does not exist or is a smart group."""
    if not interests:
        return {}
    schema = schema or Schema.read(cur, database)
    cols = ", ".join(c if schema.has("civicrm_group", c) else f"NULL AS {c}"
                     for c in GROUP_COLUMNS)
    ids = sorted(set(interests.values()))
    cur.execute(f"SELECT {cols} FROM civicrm_group WHERE id IN ({', '.join(['%s'] * len(ids))})",
                tuple(ids))
    found = {int(r[0]): GroupInfo(int(r[0]), r[1], r[2], r[3], r[4],
                                  bool(r[5]) if r[5] is not None else True, bool(r[6]))
             for r in cur.fetchall()}
    for interest, gid in interests.items():
        group = found.get(gid)
        if group is None:
            raise ConfigError(f"[interests] {interest} = {gid}: CiviCRM group {gid} not found in "
                              f"database '{database}'")
        if group.saved_search_id is not None:
            raise ConfigError(f"[interests] {interest} = {gid}: CiviCRM group {gid} "
                              f"('{group.title}') is a smart group; only normal (static) groups "
                              "can be mapped to interests")
    return found
