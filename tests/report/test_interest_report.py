"""The interest section of the audit report and the scheduled run's interest counts and
threshold, over the interest decision table's world (MariaDB + emulator + CLI + papermill)."""

from __future__ import annotations

import html
import json
from collections import Counter

from reconcile.test_interest_rules import VOL, _mapping, _world

from civimc_audit.common.codes import INTEREST_OUTCOME_ORDER
from civimc_audit.config import load_config
from civimc_audit.report.interests import interest_section
from civimc_audit.store import Store


def test_section_counts_each_interest_and_lists_removals_first(civi_db, emulator, make_config,
                                                               run_cli):
    mapping, expect = _world(civi_db, emulator)
    config = make_config(_mapping(mapping))
    for cmd in (["snapshot"], ["reconcile"]):
        code, _, err = run_cli("--config", config, *cmd)
        assert code == 0, err
    with Store(load_config(config).store_file, read_only=True) as store:
        section = interest_section(store)
    by_interest = {row["Interest"]: row for row in section.counts.to_dict("records")}
    want = Counter(cases[VOL][0] for cases in expect.values())
    vol = by_interest["Volunteering (Topics)"]
    assert {o: vol[o] for o in INTEREST_OUTCOME_ORDER} == {o: want.get(o, 0)
                                                          for o in INTEREST_OUTCOME_ORDER}
    assert vol["CiviCRM group"] == f"Volunteers ({mapping[VOL]})"
    assert "(not in the audience) 00000000aa" in by_interest
    outcomes = list(section.people["Outcome"])
    assert outcomes[0] == "gets removed from the CiviCRM group"
    assert outcomes.index("no change") > outcomes.index("interest set in Mailchimp")
    assert len(section.people) == 3 * len(expect)


def test_run_counts_interests_reports_them_and_limits_interest_removals(civi_db, emulator,
                                                                         make_config, run_cli):
    mapping, expect = _world(civi_db, emulator)
    config = make_config(_mapping(mapping) + "\n[schedule]\nmax_interest_removals = 1\n")
    code, _, err = run_cli("--config", config, "run")
    assert code == 1, err
    assert "interest removals > max_interest_removals 1" in err
    run = sorted((config.parent / "runs").iterdir())[0]
    summary = json.loads((run / "summary.json").read_text())
    want = Counter(o for cases in expect.values() for o, _, _ in cases.values())
    assert summary["interests"] == {o: want.get(o, 0) for o in INTEREST_OUTCOME_ORDER}
    removals = want["remove_from_civicrm_group"] + want["clear_interest_in_mailchimp"]
    assert summary["thresholds"]["max_interest_removals"] == {"limit": 1, "value": removals,
                                                              "crossed": True}
    page = html.unescape((run / "audit.html").read_text(encoding="utf-8"))
    assert "Interest groups" in page
    assert ("Mailchimp shows them in 'Volunteering' since 5 Jan 2025, after CiviCRM removed them "
            "from the group 'Volunteers' on 2 Jan 2025: added to the CiviCRM group "
            "'Volunteers'.") in page
