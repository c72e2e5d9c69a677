"""The generated population with interests (civimc_sandbox.population, `generate(...,
interests=True)`): every interest row gets the outcome its case records, through the real path
(MariaDB written as CiviCRM core writes it, the emulator over HTTP, the CLI's snapshot,
reconcile and `outcomes --interests`) and straight into a store (`write_store`); both cover
every rule I1–I6, and the subscription outcomes stay those of the cases."""

from __future__ import annotations

import json
from collections import Counter

from reconcile.test_rules_matrix import check_population
from support.values import TEST_LIST_ID

from civimc_audit.config import PolicySettings
from civimc_audit.reconcile import reconcile
from civimc_audit.store import Store
from civimc_sandbox.population import (
    INTEREST_ARCHETYPES,
    INTEREST_RULES,
    Case,
    expected_interest_rows,
    generate,
    instantiate,
    load_people,
    write_store,
)


def interest_problems(population, rows) -> list[str]:
    """Each interest row (dicts with email, contact_id, interest_id, civicrm_group_id, outcome,
    rule, reason_code) against the rows the population's cases expect; one line per problem,
    naming its case."""
    by_address, by_contact = {}, {}
    for inst in population.instances:
        for m in inst.case.members:
            by_address[inst.address(m.label)] = (inst, m.label)
        for k, cid in enumerate(inst.contact_ids, start=1):
            by_contact[cid] = (inst, f"#{k}")
    want = {(inst.slug, e.who, population.interest(e.key).id): (inst, e)
            for inst, e in expected_interest_rows(population)}
    problems, seen = [], set()
    for r in rows:
        owner = by_address.get((r["email"] or "").strip().lower()) or by_contact[r["contact_id"]]
        key = (owner[0].slug, owner[1], r["interest_id"])
        if key not in want or key in seen:
            problems.append(f"{owner[0].case.name} [{owner[1]}]: unexpected row {r}")
            continue
        seen.add(key)
        inst, e = want[key]
        have = (r["outcome"], r["rule"], r["reason_code"])
        if have != (e.outcome, e.rule, e.reason_code):
            problems.append(f"{inst.case.name} [{e.who} {e.key}]: got {have}, expected "
                            f"{(e.outcome, e.rule, e.reason_code)}")
        if r["civicrm_group_id"] != population.interest_groups[r["interest_id"]]:
            problems.append(f"{inst.case.name} [{e.who} {e.key}]: group {r['civicrm_group_id']}")
    problems += [f"{want[k][0].case.name} [{k[1]} {k[2]}]: no row" for k in set(want) - seen]
    return problems


def test_the_interest_archetypes_cover_every_interest_rule():
    rows = [e for c in INTEREST_ARCHETYPES for e in c.interest_rows("VQ")]
    assert {e.rule for e in rows} == set(INTEREST_RULES)
    assert "no_history_date" in {e.reason_code for e in rows}
    # People left unsubscribed get no interest rows, whatever their interests.
    assert any(not c.interest_rows("VQ") and c.members and c.members[0].interests
               for c in INTEREST_ARCHETYPES)


def test_without_interests_the_population_is_unchanged():
    plain, with_interests = generate(300, seed=1), generate(300, seed=1, interests=True)
    assert not plain.interests and not expected_interest_rows(plain)
    assert not any(i.case in INTEREST_ARCHETYPES for i in plain.instances)
    assert {i.case for i in with_interests.instances} >= set(INTEREST_ARCHETYPES)


def test_the_interest_notation_refuses_rows_that_cannot_be():
    for bad in (dict(civi="a +1", mc="a subscribed 2 V=1", expect="a no_change R1"),
                dict(civi="a +1", mc="a unsubscribed 2 V=1", expect="a remove_from_civicrm_group"
                     " R2", iexpect="a V no_change I2"),
                dict(civi="a +1", mc="a subscribed 2", expect="a no_change R1",
                     iexpect="a V no_change I9")):
        try:
            Case("bad", **bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")


def test_generated_interests_through_mariadb_and_the_emulator(civi_db, emulator, make_config,
                                                              run_cli):
    population = generate(300, seed=11, interests=True)
    load_people(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID, population)
    config = make_config(population.interests_toml())
    for step in (["snapshot"], ["reconcile"]):
        code, _, err = run_cli("--config", config, *step)
        assert code == 0, err
    code, out, err = run_cli("--config", config, "outcomes", "--format", "json")
    assert code == 0, err
    problems = check_population(population, {"": json.loads(out)})
    code, out, err = run_cli("--config", config, "outcomes", "--interests", "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    problems += interest_problems(population, rows)
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)
    assert {r["rule"] for r in rows} == set(INTEREST_RULES)
    assert Counter(r["outcome"] for r in rows) == population.expected_interest_counts()


def test_generated_interests_written_straight_into_a_store():
    population = generate(1000, seed=12, interests=True)
    with Store(":memory:") as store:
        civi, mc = write_store(store, population, order_seed=3)
        rec = reconcile(store, PolicySettings(), civicrm_snapshot_id=civi,
                        mailchimp_snapshot_id=mc)
        cur = store.con.execute(
            "SELECT o.email, i.contact_id, i.interest_id, i.civicrm_group_id, i.outcome, i.rule,"
            " i.reason_code FROM interest_outcomes i JOIN outcomes o"
            " ON o.reconciliation_id = i.reconciliation_id AND o.person_id = i.person_id"
            " WHERE i.reconciliation_id = ?", [rec["id"]])
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    assert rec["counts"] == population.expected_counts()
    problems = interest_problems(population, rows)
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)
    assert {r["rule"] for r in rows} == set(INTEREST_RULES)


def test_copies_repeat_the_interest_rows():
    population = instantiate(INTEREST_ARCHETYPES, prefix="ic",
                             interests=generate(1, interests=True).interests)
    with Store(":memory:") as store:
        civi, mc = write_store(store, population, copies=3)
        rec = reconcile(store, PolicySettings(), civicrm_snapshot_id=civi,
                        mailchimp_snapshot_id=mc)
        got = Counter(dict(store.con.execute(
            "SELECT rule, count(*) FROM interest_outcomes WHERE reconciliation_id = ?"
            " GROUP BY rule", [rec["id"]]).fetchall()))
    want = Counter(e.rule for _, e in expected_interest_rows(population))
    assert got == Counter({rule: 3 * n for rule, n in want.items()})
