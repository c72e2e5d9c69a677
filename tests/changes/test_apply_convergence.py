"""Issue 6 point 8: on a generated population with every rule, reason code and flag
(civimc_sandbox.population), loaded through the real path (CiviFixture into MariaDB, the
emulator over HTTP), a fully approved plan applied and verified leaves only what can never be
synced: the sync rule finds nothing more to do."""

from __future__ import annotations

from support.values import TEST_LIST_ID

from civimc_audit.config import load_config
from civimc_audit.store import Store
from civimc_sandbox.population import ARCHETYPES, FLAGS, REASON_CODES, generate, load_people

SEED = 7


def cli_ok(run_cli, config, *args):
    code, out, err = run_cli("--config", config, *args)
    assert code == 0, f"{args}: exit {code}\n{out}\n{err}"
    return out


def outcome_counts(config, reconciliation_id=None):
    with Store(load_config(config).store_file) as store:
        rec = store.reconciliation(reconciliation_id)
        rows = store.con.execute("SELECT outcome, count(*) FROM outcomes WHERE"
                                 " reconciliation_id = ? GROUP BY 1", [rec["id"]]).fetchall()
        return rec["id"], dict(rows)


def test_a_fully_approved_plan_converges_on_a_generated_population(civi_db, emulator,
                                                                    make_config, run_cli):
    population = generate(150, seed=SEED)
    assert population.people >= 150 and len(population.instances) > len(ARCHETYPES)
    load_people(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID, population)
    config = make_config()
    for cmd in (["snapshot"], ["reconcile"], ["plan"]):
        cli_ok(run_cli, config, *cmd)
    rid, before = outcome_counts(config)
    with Store(load_config(config).store_file) as store:
        seen = store.con.execute(
            "SELECT list(DISTINCT rule), list(DISTINCT reason_code), string_agg(flags, ' ')"
            " FROM outcomes WHERE reconciliation_id = ?", [rid]).fetchone()
    # Every rule, reason code and flag is present, so convergence is tested on all of them.
    assert {f"R{n}" for n in range(1, 11)} <= set(seen[0])
    assert set(REASON_CODES) <= set(seen[1])
    assert set(FLAGS) <= set(seen[2].split())
    assert before == population.expected_counts()

    cli_ok(run_cli, config, "approve", "--all", "--reviewer", "Ada")
    cli_ok(run_cli, config, "approve", "--freeze", "--reviewer", "Ada", "--allow-pending")
    out = cli_ok(run_cli, config, "apply", "--execute")
    n_items = sum(v for k, v in before.items() if k not in ("no_change", "cannot_sync"))
    assert n_items > 50 and before["cannot_sync"] > 0
    assert f"done {n_items}" in out
    assert f"all {n_items} applied items agree on both sides" in out

    out = cli_ok(run_cli, config, "verify")
    rid_after, after = outcome_counts(config)
    assert rid_after > rid
    # Only what could never be synced is left, and no more of it than before.
    assert set(after) <= {"no_change", "cannot_sync"}
    # (Some resolve: a contact kept out of an unsubscribe because another of its addresses
    # rejoined the group is in agreement once that addition is applied.)
    assert 0 < after.get("cannot_sync", 0) <= before["cannot_sync"]
    assert f"cannot_sync {after['cannot_sync']}" in out
    # And a plan of the converged state has no item: the sync rule finds nothing to do.
    out = cli_ok(run_cli, config, "plan")
    with Store(load_config(config).store_file) as store:
        plan_id = store.con.execute("SELECT max(id) FROM plans").fetchone()[0]
        assert store.con.execute("SELECT count(*) FROM plan_items WHERE plan_id = ?",
                                 [plan_id]).fetchone()[0] == 0


def interest_counts(config):
    with Store(load_config(config).store_file) as store:
        rec = store.reconciliation(None)
        return dict(store.con.execute("SELECT outcome, count(*) FROM interest_outcomes WHERE"
                                      " reconciliation_id = ? GROUP BY 1", [rec["id"]]).fetchall())


def test_interest_changes_converge_on_a_generated_population(civi_db, emulator, make_config,
                                                             run_cli):
    population = generate(150, seed=SEED, interests=True)
    load_people(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID, population)
    config = make_config(population.interests_toml())
    for cmd in (["snapshot"], ["reconcile"], ["plan"]):
        cli_ok(run_cli, config, *cmd)
    before = interest_counts(config)
    assert before == population.expected_interest_counts()
    assert set(before) > {"no_change", "cannot_sync"}
    cli_ok(run_cli, config, "approve", "--all", "--reviewer", "Ada")
    cli_ok(run_cli, config, "approve", "--freeze", "--reviewer", "Ada", "--allow-pending")
    out = cli_ok(run_cli, config, "apply", "--execute")
    assert "applied items agree on both sides" in out
    cli_ok(run_cli, config, "verify")
    after = interest_counts(config)
    # Only interests decided on an undated CiviCRM history are left (no_history_date).
    assert set(after) <= {"no_change", "cannot_sync"}
    assert after.get("cannot_sync", 0) == before.get("cannot_sync", 0)
    cli_ok(run_cli, config, "plan")
    with Store(load_config(config).store_file) as store:
        plan_id = store.con.execute("SELECT max(id) FROM plans").fetchone()[0]
        assert store.con.execute("SELECT count(*) FROM plan_items WHERE plan_id = ?",
                                 [plan_id]).fetchone()[0] == 0
