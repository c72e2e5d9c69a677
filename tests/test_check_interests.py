"""`check` with [interests]: each mapping in words, a missing interest said plainly, a smart
or missing group refused (real MariaDB, emulator over HTTP)."""

from __future__ import annotations

import json

from support.values import TEST_LIST_ID


def _catalogue(emulator):
    return emulator.add_interest_category(TEST_LIST_ID, "Topics", [("9f8e7d6c5b", "Volunteering"),
                                                                   ("1a2b3c4d5e", "Campaigns")])


def test_check_lists_each_mapping_with_names_and_titles(civi_db, make_config, run_cli, emulator):
    _catalogue(emulator)
    volunteers = civi_db.fixture.group("volunteers", "Volunteers")
    campaigners = civi_db.fixture.group("campaigners", "Campaigners")
    civi_db.fixture.commit()
    config = make_config(f'[interests]\n"9f8e7d6c5b" = {volunteers}\n"1a2b3c4d5e" = {campaigners}')
    code, out, err = run_cli("--config", config, "check")
    assert code == 0, err
    assert (f"Interests: 'Volunteering' (Topics, 9f8e7d6c5b) = CiviCRM group {volunteers} "
            "'Volunteers'") in out
    assert f"'Campaigns' (Topics, 1a2b3c4d5e) = CiviCRM group {campaigners} 'Campaigners'" in out
    code, out, _ = run_cli("--config", config, "check", "--json")
    checks = [c for c in json.loads(out)["checks"] if c["name"] == "interest_mapping"]
    assert [(c["facts"]["interest_id"], c["facts"]["interest_name"], c["facts"]["group_id"])
            for c in checks] == [("9f8e7d6c5b", "Volunteering", volunteers),
                                 ("1a2b3c4d5e", "Campaigns", campaigners)]


def test_check_says_plainly_when_an_interest_is_not_in_the_audience(civi_db, make_config,
                                                                     run_cli, emulator):
    _catalogue(emulator)
    group = civi_db.fixture.group("volunteers", "Volunteers")
    civi_db.fixture.commit()
    config = make_config(f'[interests]\n"00000000aa" = {group}')
    code, out, err = run_cli("--config", config, "check")
    assert code == 0
    assert (f"warning: interest 00000000aa does not exist in audience {TEST_LIST_ID}; its "
            f"mapping to CiviCRM group {group} 'Volunteers' is skipped (rule I1)") in err


def test_check_refuses_a_smart_group_or_a_missing_group(civi_db, make_config, run_cli, emulator):
    _catalogue(emulator)
    smart = civi_db.fixture.group("smart", "Smart one", saved_search_id=7)
    civi_db.fixture.commit()
    code, _, err = run_cli("--config", make_config(f'[interests]\n"9f8e7d6c5b" = {smart}'), "check")
    assert code == 2
    assert err.strip() == (f"civimc-audit: [interests] 9f8e7d6c5b = {smart}: CiviCRM group "
                           f"{smart} ('Smart one') is a smart group; only normal (static) groups "
                           "can be mapped to interests")
    code, _, err = run_cli("--config", make_config('[interests]\n"9f8e7d6c5b" = 99999'), "check")
    assert code == 2 and "CiviCRM group 99999 not found" in err
