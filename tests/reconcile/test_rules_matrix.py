"""The decision table, case by case, through the real path: every case below is written into one
MariaDB fixture database (the way CiviCRM core writes it) and into the emulator, then the real CLI
takes the snapshots and reconciles them — once per policy — and each case's outcome rows are
checked against the table. A failure names every case that went wrong.

Notation (civimc_sandbox.population): CiviCRM contacts are separated by ``;``; ``a``/``b`` are email
addresses (``:p`` primary, ``:b`` bulk, ``:h`` on hold, ``:U`` upper-case, ``:S`` spaces, ``:W``
tab/NBSP/newline), ``+D`` ``-D`` ``?D`` ``xD`` add / remove / pending / delete on January D
(``D@HH:MM:SS`` for a time), ``gc=Status`` a group_contact row with no history. Mailchimp
members: ``label status D``.
Expected rows: ``who outcome rule [reason_code] [flags] [=#N contact] [->email]`` where ``who`` is
a member's address or ``#N``, the N-th contact's own row.
"""

from __future__ import annotations

import json

import pytest
from support.values import TEST_LIST_ID

from civimc_sandbox.population import (
    FLAGS,
    MC_STATUSES,
    POLICIES,
    REASON_CODES,
    Case,
    generate,
    instantiate,
    load_people,
)

# name, CiviCRM, Mailchimp, expected rows[, policy]
TABLE = [
    # The seed page's five people.
    ("seed_wilma", "a +5", "a subscribed 1", "a no_change R5"),
    ("seed_barney", "a +1", "a unsubscribed 2", "a remove_from_civicrm_group R2"),
    ("seed_fred", "a +1 -4", "a subscribed 3", "a unsubscribe_in_mailchimp R9"),
    ("seed_betty", "a +4", "", "#1 add_to_mailchimp R6 ->a"),
    ("seed_pebbles", "a", "a subscribed 1", "a add_to_civicrm_group R3 =#1"),
    # R1/R2: Mailchimp later, contact in the group.
    ("r1_pending_mc_later", "a +1", "a pending 2", "a no_change R1"),
    ("r2_cleaned_mc_later", "a +1", "a cleaned 2", "a remove_from_civicrm_group R2"),
    ("r2_archived_mc_later", "a +1", "a archived 2", "a remove_from_civicrm_group R2"),
    ("r2_transactional_mc_later", "a +1", "a transactional 2", "a remove_from_civicrm_group R2"),
    ("r2_other_email_subscribed", "a b +1", "a unsubscribed 2; b subscribed 2",
     "a cannot_sync R2 other_email_subscribed =#1; b no_change R1 email_differs =#1"),
    ("r2_other_email_pending", "a b +1", "a cleaned 2; b pending 2",
     "a cannot_sync R2 other_email_subscribed; b no_change R1 email_differs"),
    ("r2_both_emails_out", "a b +1", "a unsubscribed 2; b archived 2",
     "a remove_from_civicrm_group R2 =#1; b remove_from_civicrm_group R2 email_differs =#1"),
    ("r2_upper_case_member", "a +1", "a:U unsubscribed 2", "a remove_from_civicrm_group R2 =#1"),
    # R3/R4: Mailchimp later (or no CiviCRM history), contact not in the group.
    ("r3_new_contact", "", "a subscribed 2", "a add_to_civicrm_group R3"),
    ("r3_new_contact_pending", "", "a pending 2", "a add_to_civicrm_group R3"),
    ("r3_removed_earlier", "a +1 -2", "a subscribed 3", "a add_to_civicrm_group R3 =#1"),
    ("r3_gc_removed_no_history", "a gc=Removed", "a subscribed 3",
     "a add_to_civicrm_group R3 no_civicrm_history"),
    ("r3_gc_pending_no_history", "a gc=Pending", "a subscribed 1",
     "a add_to_civicrm_group R3 civicrm_pending no_civicrm_history"),
    ("r3_civi_pending_earlier", "a ?1", "a subscribed 2", "a add_to_civicrm_group R3 civicrm_pending"),
    ("r4_unsubscribed_no_contact", "", "a unsubscribed 1", "a no_change R4"),
    ("r4_cleaned_no_contact", "", "a cleaned 1", "a no_change R4"),
    ("r4_removed_then_unsubscribed", "a +1 -2", "a unsubscribed 3", "a no_change R4"),
    ("r4_contact_never_in_group", "a", "a archived 1", "a no_change R4 =#1"),
    # R5/R6: CiviCRM later (or member absent), contact in the group.
    ("r5_tie_same_second", "a +2", "a subscribed 2", "a no_change R5"),
    ("r6_prefers_bulk", "a b:b +1", "", "#1 add_to_mailchimp R6 ->b"),
    ("r6_primary_on_hold", "a:h b +1", "", "#1 add_to_mailchimp R6 ->b"),
    ("r6_bulk_on_hold_uses_primary", "a:p b:bh +1", "", "#1 add_to_mailchimp R6 ->a"),
    ("r6_lowest_email_id", "a:ph b c +1", "", "#1 add_to_mailchimp R6 ->b"),
    ("r6_no_email", "+1", "", "#1 cannot_sync R6 no_usable_email"),
    ("r6_all_on_hold", "a:h b:o +1", "", "#1 cannot_sync R6 no_usable_email"),
    ("r6_email_shared_with_other_contact", "a +1; a +2", "a subscribed 3",
     "a no_change R1 duplicate_contacts =#1;"
     " #2 cannot_sync R6 email_shared_with_other_contact duplicate_contacts ->a"),
    # Two contacts in the group with the same best email and no member: one address is one
    # member, so only the lowest contact id (as matching step 2 picks) gets it added.
    ("r6_two_contacts_one_new_address", "a +1; a +2", "",
     "#1 add_to_mailchimp R6 duplicate_contacts ->a;"
     " #2 cannot_sync R6 email_shared_with_other_contact duplicate_contacts ->a"),
    ("r6_two_contacts_address_case_differs", "a:U +2; a:W +1", "",
     "#1 add_to_mailchimp R6 duplicate_contacts ->a;"
     " #2 cannot_sync R6 email_shared_with_other_contact duplicate_contacts ->a"),
    ("r6_shared_address_lowest_in_group_wins", "a; a gc=Added; a +3", "",
     "#2 add_to_mailchimp R6 duplicate_contacts no_civicrm_history ->a;"
     " #3 cannot_sync R6 email_shared_with_other_contact duplicate_contacts ->a"),
    ("r6_shared_address_other_not_in_group", "a +1 -2; a +3", "",
     "#1 no_change R10 duplicate_contacts; #2 add_to_mailchimp R6 duplicate_contacts ->a"),
    ("r6_gc_added_no_history", "a gc=Added", "", "#1 add_to_mailchimp R6 no_civicrm_history"),
    # R7/R8: CiviCRM later, contact in the group, member out.
    ("r7_unsubscribed", "a +3", "a unsubscribed 2",
     "a resubscribe_in_mailchimp R7 needs_confirmation"),
    ("r7_archived", "a +3", "a archived 2", "a resubscribe_in_mailchimp R7"),
    ("r7_transactional", "a +3", "a transactional 2", "a resubscribe_in_mailchimp R7"),
    ("r7_email_on_hold", "a:h +3", "a unsubscribed 2", "a cannot_sync R7 email_on_hold"),
    ("r7_on_hold_at_other_contact", "a +3; b a:h", "a archived 2",
     "a cannot_sync R7 email_on_hold duplicate_contacts =#1"),
    ("r7_spaces_around_email", "a:S +3", "a unsubscribed 2",
     "a resubscribe_in_mailchimp R7 needs_confirmation =#1"),
    # Whitespace other than spaces around a CiviCRM address (tab, no-break space, line break) is
    # stripped as Mailchimp's member hash strips it, so the contact matches its member.
    ("r7_whitespace_email_matches_unsubscribed_member", "a:W +3", "a unsubscribed 2",
     "a resubscribe_in_mailchimp R7 needs_confirmation =#1"),
    ("r3_whitespace_email_matches_removed_contact", "a:W +1 -2", "a subscribed 3",
     "a add_to_civicrm_group R3 =#1"),
    ("r6_whitespace_email_sent_stripped", "a:UW +1", "", "#1 add_to_mailchimp R6 ->a"),
    ("r7_readded_after_delete", "a +1 x2 +3", "a unsubscribed 2@12:00",
     "a resubscribe_in_mailchimp R7 needs_confirmation"),
    ("r8_cleaned", "a +3", "a cleaned 2", "a cannot_sync R8 cleaned_at_mailchimp"),
    ("r8_cleaned_and_on_hold", "a:h +3", "a cleaned 2", "a cannot_sync R8 cleaned_at_mailchimp"),
    # R9/R10: CiviCRM later (or member absent), contact not in the group.
    ("r9_removed_later", "a +1 -3", "a subscribed 2", "a unsubscribe_in_mailchimp R9"),
    ("r9_pending_member", "a +1 -3", "a pending 2", "a unsubscribe_in_mailchimp R9"),
    ("r9_civi_pending_later", "a ?3", "a subscribed 2",
     "a unsubscribe_in_mailchimp R9 civicrm_pending"),
    ("r9_deleted_from_group", "a +1 x3", "a subscribed 2", "a unsubscribe_in_mailchimp R9"),
    ("r9_tie_goes_to_civicrm", "a +1 -2", "a subscribed 2", "a unsubscribe_in_mailchimp R9"),
    # R9 with another member of the same contact subscribed later than CiviCRM's removal: that
    # one re-adds the contact to the group (R3), so unsubscribing this one would flip-flop.
    ("r9_other_email_rejoins_group", "a b +1 -2", "a subscribed 3; b subscribed 1",
     "a add_to_civicrm_group R3 =#1; b cannot_sync R9 other_email_subscribed email_differs =#1"),
    ("r9_other_email_also_earlier", "a b +1 -4", "a subscribed 3; b subscribed 2",
     "a unsubscribe_in_mailchimp R9 =#1; b unsubscribe_in_mailchimp R9 email_differs =#1"),
    ("r9_other_email_out_later", "a b +1 -2", "a unsubscribed 3; b subscribed 1",
     "a no_change R4; b unsubscribe_in_mailchimp R9 email_differs"),
    ("r9_other_email_ties_to_mailchimp", "a b +1 -2", "a subscribed 2; b subscribed 1",
     "a add_to_civicrm_group R3; b cannot_sync R9 other_email_subscribed email_differs",
     "tie_winner=mailchimp"),
    ("r9_other_email_tie_to_civicrm", "a b +1 -2", "a subscribed 2; b subscribed 1",
     "a unsubscribe_in_mailchimp R9; b unsubscribe_in_mailchimp R9 email_differs"),
    ("r10_removed_unsubscribed", "a +1 -3", "a unsubscribed 2", "a no_change R10"),
    ("r10_removed_cleaned", "a +1 -3", "a cleaned 2", "a no_change R10"),
    ("r10_removed_absent", "a +1 -3", "", "#1 no_change R10"),
    ("r10_deleted_absent", "a +1 x3", "", "#1 no_change R10"),
    ("r10_pending_absent", "a ?3", "", "#1 no_change R10 civicrm_pending"),
    ("r10_gc_removed_absent", "a gc=Removed", "", "#1 no_change R10 no_civicrm_history"),
    # Who wins: to the second.
    ("civicrm_one_second_later", "a +2@10:00:01", "a unsubscribed 2",
     "a resubscribe_in_mailchimp R7 needs_confirmation"),
    ("mailchimp_one_second_later", "a +2", "a unsubscribed 2@10:00:01",
     "a remove_from_civicrm_group R2"),
    ("no_history_means_mailchimp", "a gc=Added", "a unsubscribed 1",
     "a remove_from_civicrm_group R2 no_civicrm_history"),
    # History rows with no usable date (``0``: a zero date, read as NULL). An undated row older
    # (by id) than a dated one is ignored; when the newest row is undated nobody knows which side
    # changed later: no removal, addition or unsubscribe on an unknown date (no_history_date).
    ("undated_older_row_ignored", "a +0 +5", "a subscribed 1", "a no_change R5"),
    ("undated_newest_removal_not_acted_on", "a +5 -0", "a subscribed 1",
     "a cannot_sync R3 no_history_date =#1"),
    ("undated_only_history_not_removed", "a +0", "a unsubscribed 2",
     "a cannot_sync R2 no_history_date =#1"),
    ("undated_only_history_agrees", "a +0", "a subscribed 2", "a no_change R1"),
    ("undated_history_not_readded", "a -0", "a subscribed 2", "a cannot_sync R3 no_history_date"),
    ("undated_history_member_absent", "a +0", "", "#1 add_to_mailchimp R6"),
    ("undated_removed_member_absent", "a +1 -0", "", "#1 no_change R10"),
    # Matching a member to a contact.
    ("match_same_email_twice_one_contact", "a a:b +1", "a subscribed 2", "a no_change R1 =#1"),
    ("match_case_differs", "a:U +1", "a subscribed 2", "a no_change R1 =#1"),
    ("match_step2_civi_in", "a; a +1", "a subscribed 2",
     "a no_change R1 duplicate_contacts =#2"),
    ("match_step3_history", "a; a +1 -2", "a subscribed 3",
     "a add_to_civicrm_group R3 duplicate_contacts =#2"),
    ("match_step4_lowest", "a; a", "a subscribed 1", "a add_to_civicrm_group R3 duplicate_contacts =#1"),
    ("match_skips_trashed", "a +1 trashed; a +2", "a unsubscribed 3",
     "a remove_from_civicrm_group R2 contact_deleted =#2"),
    ("trashed_subscriber_new_contact", "a +1 trashed", "a subscribed 2",
     "a add_to_civicrm_group R3 contact_deleted"),
    ("trashed_unsubscribed", "a +1 trashed", "a unsubscribed 2", "a no_change R4 contact_deleted"),
    ("trashed_no_member_no_row", "a +1 trashed", "", ""),
    ("email_differs_from_best", "a b:b +1", "a subscribed 2", "a no_change R1 email_differs"),
    # Consent fields: flagged by default, acted on with honor_civicrm_consent.
    ("consent_stays_subscribed", "a +1 do_not_email", "a subscribed 2",
     "a no_change R1 consent_conflict"),
    ("consent_would_be_added", "a +2 opt_out", "", "#1 add_to_mailchimp R6 consent_conflict"),
    ("consent_would_be_resubscribed", "a +3 deceased", "a unsubscribed 2",
     "a resubscribe_in_mailchimp R7 consent_conflict needs_confirmation"),
    ("consent_joins_group", "a opt_out", "a subscribed 1",
     "a add_to_civicrm_group R3 consent_conflict"),
    ("consent_no_conflict_when_leaving", "a +1 -3 do_not_email", "a subscribed 2",
     "a unsubscribe_in_mailchimp R9"),
    ("honor_consent_unsubscribes", "a +1 do_not_email", "a subscribed 2",
     "a unsubscribe_in_mailchimp R1 consent_conflict", "honor_civicrm_consent"),
    ("honor_consent_not_added", "a +2 opt_out", "", "#1 no_change R6 consent_conflict",
     "honor_civicrm_consent"),
    ("honor_consent_not_resubscribed", "a +3 deceased", "a unsubscribed 2",
     "a no_change R7 consent_conflict", "honor_civicrm_consent"),
    ("honor_consent_joining_member", "a opt_out", "a subscribed 1",
     "a unsubscribe_in_mailchimp R3 consent_conflict", "honor_civicrm_consent"),
    ("honor_consent_plain_contact", "a +1", "a unsubscribed 2", "a remove_from_civicrm_group R2",
     "honor_civicrm_consent"),
    # tie_winner = mailchimp: only exact ties change hands.
    ("tie_to_mailchimp_removes", "a +2", "a unsubscribed 2", "a remove_from_civicrm_group R2",
     "tie_winner=mailchimp"),
    ("tie_to_mailchimp_adds", "a +1 -2", "a subscribed 2", "a add_to_civicrm_group R3",
     "tie_winner=mailchimp"),
    ("tie_policy_ignores_one_second", "a +2@10:00:01", "a unsubscribed 2",
     "a resubscribe_in_mailchimp R7 needs_confirmation", "tie_winner=mailchimp"),
]

MATRIX = [Case(*row) for row in TABLE]

# What every reason must say, in words, for each reason code (DESIGN: "reason is one sentence a
# person understands without the rules table").
REASON_PHRASES = {
    "other_email_subscribed": "while their other address",
    "no_usable_email": "no email address that is not on hold",
    "email_shared_with_other_contact": "cannot add them to Mailchimp, because their address",
    "email_on_hold": "on hold in CiviCRM",
    "cleaned_at_mailchimp": "Mailchimp cleaned the address",
    "no_history_date": "without knowing when CiviCRM last changed them",
}
OUTCOME_PHRASES = {
    "add_to_mailchimp": "subscribe ", "resubscribe_in_mailchimp": "resubscribe in Mailchimp",
    "unsubscribe_in_mailchimp": "unsubscribe in Mailchimp",
    "add_to_civicrm_group": "add", "remove_from_civicrm_group": "remove from the CiviCRM group",
    "no_change": "nothing to do",
}

POLICY_TOML = {"": "", "tie_winner=mailchimp": '[policy]\ntie_winner = "mailchimp"',
               "honor_civicrm_consent": "[policy]\nhonor_civicrm_consent = true"}


def test_the_table_covers_every_rule_status_reason_and_flag():
    assert len(MATRIX) >= 40
    assert len({c.name for c in MATRIX}) == len(MATRIX), "case names must be unique"
    expected = [e for c in MATRIX for e in c.expected]
    assert {e.rule for e in expected} == {f"R{i}" for i in range(1, 11)}
    assert {e.reason_code for e in expected} - {""} == set(REASON_CODES)
    assert set().union(*(e.flags for e in expected)) == set(FLAGS)
    assert {m.status for c in MATRIX for m in c.members} == set(MC_STATUSES)
    assert {c.policy for c in MATRIX} == set(POLICIES)
    events = {ev for c in MATRIX for k in c.contacts for ev, _ in k.events}
    assert events == {"Added", "Removed", "Pending", "Deleted"}


def reconcile_all(run_cli, make_config, policies):
    """Snapshot once, reconcile once per policy; returns {policy: outcome rows}."""
    config = make_config()
    code, _, err = run_cli("--config", config, "snapshot")
    assert code == 0, err
    rows = {}
    for policy in policies:
        config = make_config(POLICY_TOML[policy])
        code, out, err = run_cli("--config", config, "reconcile")
        assert code == 0, err
        run_id = int(out.split()[1])
        code, out, err = run_cli("--config", config, "outcomes", "--run", run_id,
                                 "--format", "json")
        assert code == 0, err
        rows[policy] = json.loads(out)
    return rows


def check_population(population, rows_by_policy) -> list[str]:
    """Compare each instance's outcome rows with its case's expectation; one line per problem,
    each naming its case."""
    owner_of_address, owner_of_contact = {}, {}
    for inst in population.instances:
        for m in inst.case.members:
            owner_of_address[inst.address(m.label)] = (inst, m.label)
        for k, cid in enumerate(inst.contact_ids, start=1):
            owner_of_contact[cid] = (inst, f"#{k}")
    problems = []
    for policy, rows in rows_by_policy.items():
        got: dict[str, dict[str, list[dict]]] = {}
        for row in rows:
            if row["mailchimp_status"] is not None:
                inst, who = owner_of_address[row["email"].strip().lower()]
            else:
                inst, who = owner_of_contact[row["contact_id"]]
            got.setdefault(inst.slug, {}).setdefault(who, []).append(row)
            if not row["reason"] or not row["reason"].endswith(".") or any(
                    bad in row["reason"] for bad in ("None", "nan", "NULL", "  ")):
                problems.append(f"{inst.case.name}: unreadable reason {row['reason']!r}")
        for inst in population.instances:
            if inst.case.policy != policy:
                continue
            name, mine = inst.case.name, got.get(inst.slug, {})
            wanted = {e.who: e for e in inst.case.expected}
            if set(mine) != set(wanted) or any(len(v) != 1 for v in mine.values()):
                problems.append(f"{name}: rows for {sorted(mine)} (counts "
                                f"{[len(v) for v in mine.values()]}), expected {sorted(wanted)}")
                continue
            for who, e in wanted.items():
                row = mine[who][0]
                have = (row["outcome"], row["rule"], row["reason_code"],
                        frozenset(row["flags"].split()), row["winner"])
                want = (e.outcome, e.rule, e.reason_code, e.flags, e.winner)
                if have != want:
                    problems.append(f"{name} [{who}]: got {_fmt(have)}, expected {_fmt(want)}"
                                    f" — reason: {row['reason']}")
                reason = row["reason"]
                if policy == "honor_civicrm_consent" and "consent_conflict" in e.flags:
                    phrase = "because CiviCRM says"
                else:
                    phrase = REASON_PHRASES.get(e.reason_code) or OUTCOME_PHRASES[e.outcome]
                decided = row["mailchimp_status"] is None or any(w in reason for w in (
                    ", after ", "same second", "so Mailchimp decides", "this address",
                    "which side changed later"))
                if phrase not in reason or not decided:
                    problems.append(f"{name} [{who}]: reason does not say what decided or "
                                    f"what happens ({phrase!r}): {reason}")
                contact = e.contact or (int(who[1:]) if who.startswith("#") else None)
                if contact is not None and row["contact_id"] != inst.contact_ids[contact - 1]:
                    problems.append(f"{name} [{who}]: contact {row['contact_id']}, expected "
                                    f"contact #{contact} ({inst.contact_ids[contact - 1]})")
                if e.email and (row["email"] or "").strip().lower() != inst.address(e.email):
                    problems.append(f"{name} [{who}]: email {row['email']!r}, expected "
                                    f"{inst.address(e.email)!r}")
    return problems


def _fmt(t) -> str:
    outcome, rule, reason, flags, winner = t
    return " ".join(x for x in (outcome, rule, reason, *sorted(flags), f"(winner {winner})") if x)


def test_case_matrix_through_mariadb_and_the_emulator(civi_db, emulator, make_config, run_cli):
    population = instantiate(MATRIX, prefix="m")
    load_people(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID, population)
    rows = reconcile_all(run_cli, make_config, sorted(POLICIES))
    problems = check_population(population, rows)
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)
    # Outcome counts add up to the people, in every policy.
    for policy, policy_rows in rows.items():
        assert len(policy_rows) == population.people, policy


def test_generated_population_gets_its_expected_outcomes(civi_db, emulator, make_config, run_cli):
    population = generate(300, seed=7)
    assert population.people >= 300
    load_people(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID, population)
    rows = reconcile_all(run_cli, make_config, [""])
    problems = check_population(population, rows)
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)
    got = rows[""]
    assert len(got) == population.people
    assert {r["rule"] for r in got} == {f"R{i}" for i in range(1, 11)}
    assert {r["reason_code"] for r in got} - {""} == set(REASON_CODES)
    assert set().union(*(set(r["flags"].split()) for r in got)) == set(FLAGS)
    # The table format copes with rows that have no contact (new contacts, R3/R4).
    code, out, err = run_cli("--config", make_config(), "outcomes")
    assert code == 0, err
    assert len(out.strip().splitlines()) == population.people + 1


def test_generation_is_deterministic_and_scales():
    a, b = generate(500, seed=3), generate(500, seed=3)
    assert [(i.case.name, i.slug, i.shift) for i in a.instances] == \
        [(i.case.name, i.slug, i.shift) for i in b.instances]
    assert generate(500, seed=4).instances[-1].shift != a.instances[-1].shift or \
        [i.case.name for i in generate(500, seed=4).instances] != [i.case.name for i in a.instances]
    big = generate(20_000, seed=1)
    assert 20_000 <= big.people < 20_010
    assert sum(big.expected_counts().values()) == big.people


@pytest.mark.parametrize("text", ["a +1 bogus", "a:z +1", "a +"])
def test_the_notation_rejects_typos(text):
    with pytest.raises(ValueError):
        Case("bad", text)
