"""Points 1, 3 and 4 of issue 6: plan, review through a CSV or by rule, and freezing."""

from __future__ import annotations

import csv
import json

import pytest
from support.values import TEST_LIST_ID

from civimc_audit.changes.plan import get_plan, items_frame
from civimc_audit.changes.review import check_frozen, decide, filter_items, freeze
from civimc_audit.config import load_config
from civimc_audit.errors import UsageError
from civimc_audit.store import Store
from civimc_sandbox.demo import load_seed, seed_email

YEAR = 2026


@pytest.fixture
def planned(civi_db, emulator, make_config, run_cli):
    """The seed's five people snapshotted, reconciled and planned; returns (config, ids)."""
    ids = load_seed(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID, YEAR)
    config = make_config()
    for cmd in (["snapshot"], ["reconcile"]):
        code, _, err = run_cli("--config", config, *cmd)
        assert code == 0, err
    code, out, err = run_cli("--config", config, "plan")
    assert code == 0, err
    assert out.strip().splitlines()[-1] == "plan 1"
    return config, ids


def store_of(config):
    return Store(load_config(config).store_file)


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_plan_has_one_undecided_item_per_action(planned, civi_db, run_cli):
    config, ids = planned
    with store_of(config) as store:
        items = items_frame(store, 1).set_index("email")
    assert len(items) == 4  # Wilma needs no change
    expected = {
        "Barney": ("civicrm", "remove_from_group", {"contact_id": ids["Barney"],
                                                     "group_id": civi_db.group_id}),
        "Fred": ("mailchimp", "unsubscribe", {"email_address": seed_email("Fred"),
                                              "status": "unsubscribed"}),
        "Betty": ("mailchimp", "subscribe", {
            "email_address": seed_email("Betty"), "status": "subscribed",
            "merge_fields": {"FNAME": "Betty", "LNAME": "Rubble"}}),
        "Pebbles": ("civicrm", "add_to_group", {"contact_id": ids["Pebbles"],
                                                "group_id": civi_db.group_id}),
    }
    for first, (target, action, payload) in expected.items():
        row = items.loc[seed_email(first)]
        assert (row["target"], row["action"]) == (target, action), first
        assert json.loads(row["payload"]) == payload, first
        assert row["decision"] == "undecided"
    # Removals come first.
    assert list(items["outcome"][:2]) == ["remove_from_civicrm_group", "unsubscribe_in_mailchimp"]
    code, out, _ = run_cli("--config", config, "plan", "--show")
    assert code == 0
    assert "plan 1: reconciliation 1" in out and "open" in out
    assert "mailchimp  subscribe" in out
    assert "4 items; 2 removals" in out


def test_new_contact_item_carries_the_member_name(civi_db, emulator, make_config, run_cli):
    emulator.add_member(TEST_LIST_ID, "new@example.org", status="subscribed",
                        last_changed="2026-01-01T00:00:00+00:00",
                        merge_fields={"FNAME": "Nova", "LNAME": "Newman"})
    config = make_config()
    for cmd in (["snapshot"], ["reconcile"], ["plan"]):
        assert run_cli("--config", config, *cmd)[0] == 0
    with store_of(config) as store:
        (item,) = items_frame(store, 1).to_dict("records")
    assert item["action"] == "create_contact"
    assert json.loads(item["payload"]) == {"email": "new@example.org", "first_name": "Nova",
                                           "last_name": "Newman", "group_id": civi_db.group_id}


def test_csv_round_trip_records_decisions_with_reviewer(planned, run_cli, tmp_path):
    config, _ = planned
    path = tmp_path / "decisions.csv"
    code, out, err = run_cli("--config", config, "review", "--export", path)
    assert code == 0, err
    rows = read_csv(path)
    assert [r["outcome"] for r in rows[:2]] == ["remove_from_civicrm_group",
                                               "unsubscribe_in_mailchimp"]
    for r in rows:
        r["decision"] = "reject" if r["email"] == seed_email("Barney") else "approve"
        if r["email"] == seed_email("Barney"):
            r["note"] = "asked by phone, keep him"
    write_csv(path, rows)
    code, out, err = run_cli("--config", config, "review", "--import", path, "--reviewer", "Ada")
    assert code == 0, err
    assert "recorded 3 approved, 1 rejected" in out
    with store_of(config) as store:
        items = items_frame(store, 1).set_index("email")
    barney = items.loc[seed_email("Barney")]
    assert (barney["decision"], barney["reviewer"], barney["note"]) == (
        "rejected", "Ada", "asked by phone, keep him")
    assert (items["reviewer"] == "Ada").all() and items["decided_at"].notna().all()


@pytest.mark.parametrize("edit, message", [
    (lambda rows: rows[0].update(item_id="99"), "unknown item id '99'"),
    (lambda rows: rows[1].update(payload=rows[1]["payload"].replace("unsubscribed",
                                                                     "subscribed")),
     "edited payload"),
    (lambda rows: rows[2].update(email="someone@else.org"), "edited email"),
    (lambda rows: rows[0].update(decision="maybe"), "is not approve/reject/blank"),
    (lambda rows: rows.append(dict(rows[0])), "appears twice"),
])
def test_bad_csv_is_refused_and_records_nothing(planned, run_cli, tmp_path, edit, message):
    config, _ = planned
    path = tmp_path / "d.csv"
    run_cli("--config", config, "review", "--export", path)
    rows = read_csv(path)
    for r in rows:
        r["decision"] = "approve"
    edit(rows)
    write_csv(path, rows)
    code, _, err = run_cli("--config", config, "review", "--import", path, "--reviewer", "Ada")
    assert code == 2
    assert message in err and "nothing recorded" in err
    assert len(err.strip().splitlines()) == 1
    with store_of(config) as store:
        assert store.con.execute("SELECT count(*) FROM decisions").fetchone()[0] == 0


def test_csv_from_another_plan_is_refused(planned, run_cli, tmp_path):
    config, _ = planned
    old = tmp_path / "old.csv"
    run_cli("--config", config, "review", "--export", old)
    assert run_cli("--config", config, "plan", "--new")[0] == 0  # plan 2 of the same reconciliation
    rows = read_csv(old)
    for r in rows:
        r["decision"] = "approve"
    write_csv(old, rows)
    code, _, err = run_cli("--config", config, "review", "--plan", 2, "--import", old,
                           "--reviewer", "Ada")
    assert code == 2 and "comes from another plan" in err
    # Same plan id, but another store (another plan token): refused as well.
    for r in rows:
        r["plan_token"] = "0" * 32
    write_csv(old, rows)
    code, _, err = run_cli("--config", config, "review", "--import", old, "--reviewer", "Ada")
    assert code == 2 and "comes from another plan" in err


def test_approve_by_outcome_and_reject_by_rule(planned, run_cli):
    config, _ = planned
    code, out, err = run_cli("--config", config, "approve", "--outcome", "add_to_mailchimp",
                             "--reviewer", "Bea")
    assert code == 0, err
    assert "1 items approved" in out
    code, out, _ = run_cli("--config", config, "approve", "--rule", "R2", "--reject",
                           "--reviewer", "Bea", "--note", "keep")
    assert code == 0 and "1 items rejected" in out
    code, out, _ = run_cli("--config", config, "approve", "--undecided", "--reviewer", "Cy")
    assert code == 0 and "2 items approved" in out
    with store_of(config) as store:
        items = items_frame(store, 1).set_index("email")
    assert items.loc[seed_email("Betty"), "reviewer"] == "Bea"
    assert items.loc[seed_email("Barney"), "decision"] == "rejected"
    assert items.loc[seed_email("Fred"), "reviewer"] == "Cy"
    code, _, err = run_cli("--config", config, "approve", "--all")
    assert code == 2 and "reviewer name" in err
    code, _, err = run_cli("--config", config, "approve", "--reviewer", "Cy")
    assert code == 2 and "say which items" in err


def test_freeze_records_hash_reviewers_and_then_refuses_changes(planned, run_cli, tmp_path):
    config, _ = planned
    run_cli("--config", config, "approve", "--target", "mailchimp", "--reviewer", "Ada")
    run_cli("--config", config, "approve", "--target", "civicrm", "--reviewer", "Bea")
    code, out, err = run_cli("--config", config, "approve", "--freeze", "--reviewer", "Lead")
    assert code == 0, err
    with store_of(config) as store:
        plan = get_plan(store, 1)
        assert plan.frozen and len(plan.frozen_hash) == 64
        assert plan.frozen_reviewers == ["Ada", "Bea"] and plan.frozen_by == "Lead"
        assert plan.frozen_at is not None
        check_frozen(store, plan)  # hash still matches
    assert plan.frozen_hash in out
    code, _, err = run_cli("--config", config, "approve", "--all", "--reviewer", "Ada")
    assert code == 2 and "is frozen" in err
    path = tmp_path / "d.csv"
    assert run_cli("--config", config, "review", "--export", path)[0] == 0
    code, _, err = run_cli("--config", config, "review", "--import", path, "--reviewer", "Ada")
    assert code == 2 and "is frozen" in err
    code, out, _ = run_cli("--config", config, "plan", "--show")
    assert "frozen" in out and "reviewers: Ada, Bea" in out


def test_tampering_after_freeze_breaks_the_hash(planned, run_cli):
    config, _ = planned
    run_cli("--config", config, "approve", "--all", "--reviewer", "Ada")
    run_cli("--config", config, "approve", "--freeze", "--reviewer", "Ada")
    with store_of(config) as store:
        store.con.execute("UPDATE plan_items SET payload = replace(payload, 'unsubscribed',"
                          " 'subscribed') WHERE plan_id = 1")
        with pytest.raises(UsageError, match="no longer matches"):
            check_frozen(store, get_plan(store, 1))
    with store_of(config) as store:
        store.con.execute("UPDATE plan_items SET payload = replace(payload, '\"subscribed\"',"
                          " '\"unsubscribed\"') WHERE plan_id = 1 AND action = 'unsubscribe'")
        check_frozen(store, get_plan(store, 1))
        # A decision slipped in behind the freeze also breaks it.
        store.con.execute("INSERT INTO decisions (plan_id, item_id, decision, reviewer,"
                          " decided_at, via) VALUES (1, 1, 'rejected', 'x', now(), 'sql')")
        with pytest.raises(UsageError, match="no longer matches"):
            check_frozen(store, get_plan(store, 1))


def test_freeze_needs_approved_items_and_decide_rejects_unknown_ids(planned):
    config, _ = planned
    with store_of(config) as store:
        with pytest.raises(UsageError, match="no approved items"):
            freeze(store, 1, "Ada")
        with pytest.raises(UsageError, match="has no item"):
            decide(store, 1, [1, 42], "approved", "Ada")


def test_filters_cover_outcome_rule_flag_text_and_dates(planned):
    config, _ = planned
    with store_of(config) as store:
        frame = items_frame(store, 1)
    assert set(filter_items(frame, outcome="add_to_civicrm_group")["email"]) == {
        seed_email("Pebbles")}
    assert set(filter_items(frame, rule=["R2", "R9"])["email"]) == {
        seed_email("Barney"), seed_email("Fred")}
    assert filter_items(frame, flag="no_civicrm_history").empty
    frame.loc[frame["email"] == seed_email("Betty"), "flags"] = "consent_conflict email_differs"
    assert set(filter_items(frame, flag=["email_differs"])["email"]) == {seed_email("Betty")}
    assert set(filter_items(frame, text="RUBBLE")["email"]) == {
        seed_email("Barney"), seed_email("Betty")}
    # Fred's later change is 4 Jan, Betty's 4 Jan, Barney's 2 Jan, Pebbles' 1 Jan.
    got = filter_items(frame, since=f"{YEAR}-01-03", until=f"{YEAR}-01-05")
    assert set(got["email"]) == {seed_email("Fred"), seed_email("Betty")}


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def test_csv_export_defuses_spreadsheet_formulas_and_round_trips(civi_db, emulator, make_config,
                                                                 run_cli, tmp_path):
    """Finding 13: a cell a spreadsheet would run as a formula is written with a leading "'",
    and the exported file is still accepted on import with the values unchanged."""
    from civimc_sandbox.demo import jan

    cid = civi_db.fixture.contact('=HYPERLINK("http://evil.example","x")', "+1",
                                  email="-dash@example.org")
    civi_db.fixture.add_to_group(cid, civi_db.group_id, jan(3, YEAR))
    civi_db.fixture.commit()
    config = make_config()
    for cmd in (["snapshot"], ["reconcile"], ["plan"]):
        code, _, err = run_cli("--config", config, *cmd)
        assert code == 0, err
    path = tmp_path / "d.csv"
    assert run_cli("--config", config, "review", "--export", path)[0] == 0
    rows = read_csv(path)
    (row,) = [r for r in rows if "dash@example.org" in r["email"]]
    assert row["email"] == "'-dash@example.org"
    assert row["display_name"].startswith("'=HYPERLINK(")
    for r in rows:
        assert not any(v.startswith(FORMULA_STARTS) for v in r.values()), r
    for r in rows:
        r["decision"] = "approve"
    row["note"] = "'=looks odd but fine"
    write_csv(path, rows)
    code, out, err = run_cli("--config", config, "review", "--import", path, "--reviewer", "Ada")
    assert code == 0, err
    with store_of(config) as store:
        items = items_frame(store, 1).set_index("email")
    item = items.loc["-dash@example.org"]
    assert item["decision"] == "approved" and item["note"] == "=looks odd but fine"
    assert item["display_name"].startswith("=HYPERLINK(")


def test_a_csv_withdraws_decisions_with_who_and_when_and_says_what_it_stored(planned, run_cli,
                                                                             tmp_path):
    """Issue 20 point 2: blank or `undecided` clears an earlier approve/reject, recorded with
    who and when; the summary the import prints matches what is stored; a withdrawn approval
    is neither frozen nor applied."""
    config, _ = planned
    path = tmp_path / "decisions.csv"
    code, _, err = run_cli("--config", config, "review", "--export", path)
    assert code == 0, err
    rows = read_csv(path)
    for r in rows:
        r["decision"] = "approve"
    write_csv(path, rows)
    code, out, err = run_cli("--config", config, "review", "--import", path, "--reviewer", "Ada")
    assert code == 0 and "recorded 4 approved, 0 rejected (0 undecided)" in out, (out, err)
    # Bea withdraws two approvals (blank, `undecided`), keeps one and turns one into a reject;
    # the rows she leaves as they were exported again stay as they are.
    code, _, err = run_cli("--config", config, "review", "--export", path)
    rows = read_csv(path)
    emails = [r["email"] for r in rows]
    withdrawn = {emails[0]: "", emails[1]: "undecided"}
    for r in rows:
        r["decision"] = withdrawn.get(r["email"], r["decision"])
        if r["email"] == emails[2]:
            r["decision"] = "reject"
    write_csv(path, rows)
    code, out, err = run_cli("--config", config, "review", "--import", path, "--reviewer", "Bea")
    assert code == 0, err
    assert out.strip() == ("recorded 1 approved, 1 rejected (2 undecided, 2 of them withdrawn "
                           "from an earlier decision)")
    with store_of(config) as store:
        items = items_frame(store, 1).set_index("email")
        log = store.con.execute("SELECT item_id, decision, reviewer FROM decisions"
                                " WHERE reviewer = 'Bea' ORDER BY item_id").fetchall()
    stored = items["decision"].value_counts().to_dict()
    assert stored == {"approved": 1, "rejected": 1, "undecided": 2}
    for email in withdrawn:
        row = items.loc[email]
        assert (row["decision"], row["reviewer"]) == ("undecided", "Bea")
        assert row["decided_at"] is not None
    assert sorted(d for _, d, _ in log) == ["approved", "rejected", "undecided", "undecided"]
    # Importing the same CSV again withdraws nothing more (they are undecided already).
    code, out, err = run_cli("--config", config, "review", "--import", path, "--reviewer", "Bea")
    assert "(2 undecided)" in out, (out, err)
    # Frozen, only the one approval is in the plan; the withdrawn ones are never sent.
    code, _, err = run_cli("--config", config, "approve", "--freeze", "--reviewer", "Bea")
    assert code == 0, err
    code, out, err = run_cli("--config", config, "apply")
    assert code == 0, err
    assert out.count("would send:") == 1
    for email in withdrawn:
        assert email not in out.split("would send:", 1)[1]


def test_an_out_of_date_csv_never_overwrites_a_later_decision(planned, run_cli, tmp_path):
    """Ada exports; Bea then rejects one item and approves another; Ada's CSV (which approves
    the first and leaves the second blank) is refused, naming both, and nothing is recorded.
    Rows that agree with what is stored, or whose item nobody decided since, go through."""
    config, _ = planned
    path = tmp_path / "ada.csv"
    code, _, err = run_cli("--config", config, "review", "--export", path)
    assert code == 0, err
    rows = read_csv(path)
    first, second = int(rows[0]["item_id"]), int(rows[1]["item_id"])
    with store_of(config) as store:
        decide(store, 1, [first], "rejected", "Bea")
        decide(store, 1, [second], "approved", "Bea")
    rows[0]["decision"] = "approve"
    for r in rows[2:]:
        r["decision"] = "approve"
    write_csv(path, rows)
    code, out, err = run_cli("--config", config, "review", "--import", path, "--reviewer", "Ada")
    assert code == 2, (out, err)
    assert f"item {first} was decided again since this CSV was exported (rejected by Bea" in err
    assert f"item {second} was decided again" in err and "export again" in err
    with store_of(config) as store:
        items = items_frame(store, 1).set_index("item_id")
        assert items.loc[first, "decision"] == "rejected"
        assert items.loc[second, "decision"] == "approved"
        assert store.con.execute("SELECT count(*) FROM decisions WHERE reviewer = 'Ada'"
                                 ).fetchone()[0] == 0
    # Agreeing with Bea on those two, the rest of Ada's file is recorded.
    rows[0]["decision"], rows[1]["decision"] = "reject", "approve"
    write_csv(path, rows)
    code, out, err = run_cli("--config", config, "review", "--import", path, "--reviewer", "Ada")
    assert code == 0, (out, err)
    with store_of(config) as store:
        items = items_frame(store, 1).set_index("item_id")
    assert items.loc[first, "decision"] == "rejected"
    assert all(items.loc[int(r["item_id"]), "decision"] == "approved" for r in rows[2:])
