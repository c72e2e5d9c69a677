"""Property test of the interest rules (I1–I6) on random small worlds written straight into a
DuckDB store: random subscription worlds (as test_rules_property draws them), then random
interests on every member and random memberships and history in two mapped groups, one of
whose interests the audience may lack. Every interest row agrees with a plain-Python reading
of DESIGN "Interest groups" — who gets rows, the per-group winner (to the second, tie rule,
tie_winner), I1–I6 and no_history_date — an implementation independent of the SQL."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reconcile.test_rules_property import build, moment, policies, worlds

from civimc_audit.config import PolicySettings
from civimc_audit.reconcile import reconcile
from civimc_audit.store import Store
from civimc_sandbox.population import write_store

MAPPED = {"9f8e7d6c5b": 501, "1a2b3c4d5e": 502}
SUBSCRIBED = {"no_change", "add_to_civicrm_group", "add_to_mailchimp", "resubscribe_in_mailchimp"}
_STORE: list[Store] = []

values = st.sampled_from([None, True, False])  # None: no entry for the interest
events = st.lists(st.tuples(st.sampled_from(["Added", "Removed", "Pending", "Deleted"]),
                            st.integers(0, 3), st.sampled_from([0, 1])), max_size=3)
gc_status = st.sampled_from([None, "Added", "Removed", "Pending"])


def _store() -> Store:
    if not _STORE:
        _STORE.append(Store(":memory:"))
    return _STORE[0]


def _add_interests(store, civi, mc, data, in_audience: bool):
    con = store.con
    members = [r[0] for r in con.execute(
        "SELECT id FROM mailchimp_member WHERE snapshot_id = ? ORDER BY id", [mc]).fetchall()]
    for mid in members:
        entries = {i: v for i in MAPPED if (v := data.draw(values)) is not None}
        con.execute("UPDATE mailchimp_member SET interests = ? WHERE snapshot_id = ? AND id = ?",
                    [json.dumps(entries, separators=(",", ":")), mc, mid])
    contacts = [r[0] for r in con.execute(
        "SELECT id FROM civicrm_contact WHERE snapshot_id = ? ORDER BY id", [civi]).fetchall()]
    next_id = 10_000_000
    for cid in contacts:
        for gid in MAPPED.values():
            status = data.draw(gc_status)
            if status:
                next_id += 1
                con.execute("INSERT INTO civicrm_group_contact VALUES (?, ?, ?, ?, ?)",
                            [civi, next_id, gid, cid, status])
            for s, day, sec in data.draw(events):
                next_id += 1
                when = moment(day, sec).replace(tzinfo=None) if day else None
                con.execute("INSERT INTO civicrm_subscription_history VALUES"
                            " (?, ?, ?, ?, ?, 'Admin', ?)", [civi, next_id, cid, gid, when, s])
    ids = list(MAPPED)
    con.execute("INSERT INTO mailchimp_interest VALUES (?, 'cat', 'Topics', ?, 'First')",
                [mc, ids[0]])
    if in_audience:
        con.execute("INSERT INTO mailchimp_interest VALUES (?, 'cat', 'Topics', ?, 'Second')",
                    [mc, ids[1]])
    meta = store.snapshot(civi).meta
    meta["interest_groups"] = [{"interest_id": i, "group_id": g, "title": f"G{g}"}
                               for i, g in MAPPED.items()]
    con.execute("UPDATE snapshots SET meta = ? WHERE id = ?", [json.dumps(meta), civi])


def oracle(store, rec_id, civi, mc, policy: PolicySettings, in_audience: bool) -> dict:
    """{(person_id, interest_id): (outcome, rule, reason_code, winner)} from the spec."""
    con = store.con
    catalogue = {r[0] for r in con.execute(
        "SELECT id FROM mailchimp_interest WHERE snapshot_id = ?", [mc]).fetchall()}
    members = {r[0]: json.loads(r[1] or "{}") for r in con.execute(
        "SELECT id, interests FROM mailchimp_member WHERE snapshot_id = ?", [mc]).fetchall()}
    gc = {}
    for cid, gid, status, _row_id in con.execute(
            "SELECT contact_id, group_id, status, id FROM civicrm_group_contact"
            " WHERE snapshot_id = ? ORDER BY id", [civi]).fetchall():
        gc[(cid, gid)] = status  # the highest id wins, as arg_max(status, id)
    history: dict = {}
    for cid, gid, date, row_id in con.execute(
            "SELECT contact_id, group_id, date, id FROM civicrm_subscription_history"
            " WHERE snapshot_id = ? ORDER BY id", [civi]).fetchall():
        history.setdefault((cid, gid), []).append((row_id, date))
    out = {}
    for pid, cid, mid, changed, rule, outcome in con.execute(
            "SELECT person_id, contact_id, member_id, mailchimp_changed, rule, outcome"
            " FROM outcomes WHERE reconciliation_id = ?", [rec_id]).fetchall():
        if rule not in ("R1", "R3", "R5", "R6", "R7") or outcome not in SUBSCRIBED:
            continue
        for iid, gid in MAPPED.items():
            value = members[mid].get(iid) if mid is not None and iid in catalogue else None
            civi_in = cid is not None and gc.get((cid, gid)) == "Added"
            rows = history.get((cid, gid), []) if cid is not None else []
            undated = bool(rows) and max(rows)[1] is None
            dated = [d for _, d in rows if d is not None]
            c_changed = max(dated) if dated and not undated else None
            if mid is None:
                winner = "civicrm"
            elif not rows or c_changed is None:
                winner = "mailchimp"
            elif changed is None:
                winner = "civicrm"
            else:
                c = c_changed.replace(microsecond=0)
                m = changed.replace(microsecond=0)
                winner = ("civicrm" if c > m else "mailchimp" if c < m else policy.tie_winner)
            if value is None:
                row = ("no_change", "I1", "no_interest_data")
            elif value == civi_in:
                row = ("no_change", "I2", "")
            elif winner == "mailchimp":
                r = "I3" if value else "I4"
                row = (("cannot_sync", r, "no_history_date") if undated else
                       ("add_to_civicrm_group" if value else "remove_from_civicrm_group", r, ""))
            else:
                row = ("set_interest_in_mailchimp", "I5", "") if civi_in else \
                    ("clear_interest_in_mailchimp", "I6", "")
            out[(pid, iid)] = (*row, winner)
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds, policy=policies, in_audience=st.booleans(), data=st.data())
def test_random_worlds_follow_the_interest_rules(world, policy, in_audience, data):
    store = _store()
    civi, mc = write_store(store, build(world))
    _add_interests(store, civi, mc, data, in_audience)
    rec = reconcile(store, policy, civicrm_snapshot_id=civi, mailchimp_snapshot_id=mc)
    got = {(pid, iid): (outcome, rule, code, winner) for pid, iid, outcome, rule, code, winner, why
           in store.con.execute(
               "SELECT person_id, interest_id, outcome, rule, reason_code, winner, reason"
               " FROM interest_outcomes WHERE reconciliation_id = ?", [rec["id"]]).fetchall()
           if why and "None" not in why}
    n = store.con.execute("SELECT count(*) FROM interest_outcomes WHERE reconciliation_id = ?",
                          [rec["id"]]).fetchone()[0]
    assert len(got) == n  # every row has a sentence
    assert got == oracle(store, rec["id"], civi, mc, policy, in_audience)


def test_no_mapping_makes_no_interest_rows():
    store = _store()
    civi, mc = write_store(store, build([([], ())]))
    rec = reconcile(store, PolicySettings(), civicrm_snapshot_id=civi, mailchimp_snapshot_id=mc)
    assert store.con.execute("SELECT count(*) FROM interest_outcomes WHERE reconciliation_id = ?",
                             [rec["id"]]).fetchone()[0] == 0
