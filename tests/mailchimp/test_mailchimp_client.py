"""The Mailchimp client against the emulator over HTTP: base URL, auth errors as one line
without the key, and retries on exactly the transient failures."""

from __future__ import annotations

import re
import socket

import pytest
from support.mc_env import KEY, LIST, mc_env
from support.values import TEST_API_KEY, TEST_LIST_ID

from civimc_audit.config import ENV_MAILCHIMP_API_KEY, MailchimpSettings
from civimc_audit.errors import ConfigError, MailchimpError
from civimc_audit.mailchimp.client import MailchimpClient


@pytest.fixture
def mc(tmp_path, monkeypatch):
    yield from mc_env(tmp_path, monkeypatch)


def test_base_url_comes_from_the_key_unless_overridden(monkeypatch):
    monkeypatch.setenv(ENV_MAILCHIMP_API_KEY, "0123456789abcdef0123456789abcdef-us19")
    assert MailchimpSettings(list_id="x").url == "https://us19.api.mailchimp.com/3.0"
    assert MailchimpSettings(list_id="x", base_url="http://127.0.0.1:1/3.0/").url == \
        "http://127.0.0.1:1/3.0"
    monkeypatch.setenv(ENV_MAILCHIMP_API_KEY, "not-a-key")
    with pytest.raises(ConfigError, match="malformed") as err:
        MailchimpClient(MailchimpSettings(list_id="x"))
    assert "not-a-key" not in str(err.value)


def _list_calls(mc):
    return [r for r in mc.emu.requests if r.path == f"/3.0/lists/{LIST}"]


@pytest.mark.parametrize("kind", ["429", "429-bare", "500", "503", "403", "drop", "cut"])
def test_transient_failures_are_retried_with_exponential_backoff(mc, kind):
    client = mc.client(backoff=0.02)
    mc.emu.faults.queue(kind, 3)
    assert client.get_list(LIST)["id"] == LIST
    calls = _list_calls(mc)
    assert [r.fault for r in calls] == [kind, kind, kind, None]
    assert client.stats["retries"] == 3 and client.stats["requests"] == 4
    # equal jitter: attempt i sleeps between d/2 and d, d = backoff * 2**i
    for attempt, slept in client.pauses:
        d = 0.02 * 2 ** attempt
        assert d / 2 <= slept <= d
    assert [a for a, _ in client.pauses] == [0, 1, 2]


def test_timeouts_are_retried(mc):
    client = mc.client(timeout=0.3)
    mc.emu.faults.configure(slow_seconds=1.0)
    mc.emu.faults.queue("slow")
    assert client.get_list(LIST)["id"] == LIST
    assert client.stats["ReadTimeout"] == 1 and client.stats["retries"] == 1


def test_a_write_whose_answer_was_lost_is_sent_again(mc):
    client = mc.client()
    mc.emu.faults.queue("drop-after")
    body = {"email_address": "lost@example.org", "status_if_new": "subscribed"}
    member = client.request("PUT", f"/lists/{LIST}/members/lost@example.org", json=body)
    assert member["status"] == "subscribed"
    puts = [r for r in mc.emu.requests if r.method == "PUT"]
    assert [r.fault for r in puts] == ["drop-after", None]


def test_other_client_errors_are_final(mc):
    client = mc.client()
    with pytest.raises(MailchimpError) as err:
        client.get(f"/lists/{LIST}/members/nobody@example.org")
    assert err.value.status == 404 and err.value.title == "Resource Not Found"
    with pytest.raises(MailchimpError) as err:
        client.request("PUT", f"/lists/{LIST}/members/new@example.org",
                       json={"email_address": "new@example.org"})
    assert err.value.title == "Invalid Resource" and "status_if_new" in str(err.value.errors)
    assert client.stats["retries"] == 0 and client.stats["requests"] == 2


def test_giving_up_names_the_failure_in_one_line(mc):
    client = mc.client(retries=2)
    mc.emu.faults.configure(rate_5xx=1.0)
    with pytest.raises(MailchimpError) as err:
        client.get_list(LIST)
    assert "gave up after 3 attempts" in str(err.value) and len(_list_calls(mc)) == 3
    mc.emu.faults.configure(rate_5xx=0.0, rate_drop=1.0)
    with pytest.raises(MailchimpError, match="unreachable .* after 3 attempt"):
        client.get_list(LIST)


@pytest.mark.parametrize("key,code,words", [
    (TEST_API_KEY.replace("-us7", "-us9"), 2, "403 Wrong Datacenter"),
    ("00000000000000000000000000000000-us7", 2, "401 API Key Invalid"),
    ("deadbeef-us7", 2, "malformed"),
])
def test_check_names_a_bad_key_in_one_line_without_the_key(civi_db, emulator, make_config,
                                                           run_cli, monkeypatch, key, code,
                                                           words):
    config = make_config()
    monkeypatch.setenv(ENV_MAILCHIMP_API_KEY, key)
    rc, out, err = run_cli("--config", config, "check")
    assert rc == code, (out, err)
    assert len(err.strip().splitlines()) == 1 and words in err
    assert key.split("-")[0] not in err and TEST_API_KEY.split("-")[0] not in err
    assert ENV_MAILCHIMP_API_KEY in err


def test_check_names_a_missing_audience_and_passes_when_all_is_well(civi_db, emulator,
                                                                    make_config, run_cli):
    config = make_config()
    config.write_text(config.read_text().replace(TEST_LIST_ID, "0000000000"))
    rc, out, err = run_cli("--config", config, "check")
    assert rc == 2 and "audience '0000000000' not found" in err
    assert len(err.strip().splitlines()) == 1
    config.write_text(config.read_text().replace("0000000000", TEST_LIST_ID))
    emulator.add_member(TEST_LIST_ID, "a@example.org", status="archived")
    rc, out, err = run_cli("--config", config, "check")
    assert rc == 0, err
    assert f"audience {TEST_LIST_ID} 'Test audience' exists" in out and "(1 of any status)" in out


def test_wrong_data_centre_is_not_retried(mc, monkeypatch):
    monkeypatch.setenv(ENV_MAILCHIMP_API_KEY, KEY.replace("-us7", "-us2"))
    client = mc.client()
    with pytest.raises(MailchimpError, match="data centre us2"):
        client.ping()
    assert client.stats["requests"] == 1


def test_the_traffic_check_catches_requests_and_responses_off_the_spec():
    from support.spec import traffic_violations

    from civimc_sandbox.emulator import RecordedRequest

    ok = RecordedRequest("GET", f"/3.0/lists/{LIST}/members", {"count": "1000", "offset": "0"},
                         None, 429, {"type": "t", "title": "Too Many Requests", "status": 429,
                                     "detail": "d", "instance": "i"})
    assert traffic_violations([ok]) == []
    bad = [
        RecordedRequest("PUT", f"/3.0/lists/{LIST}/members/h", {"sort_dir": "UP"},
                        {"email_adress": "typo@example.org"}, 200, None),
        RecordedRequest("GET", f"/3.0/lists/{LIST}/members", {}, None, 503,
                        {"title": "Service Unavailable", "status": 503}),
        RecordedRequest("GET", "/3.0/no/such/path", {}, None, 404, None),
    ]
    found = traffic_violations(bad)
    assert any("email_adress" in v for v in found)
    assert any("sort_dir" in v for v in found)
    assert any("instance" in v for v in found)
    assert any("not an operation" in v for v in found)


@pytest.mark.parametrize("kind,what", [
    ("429", "Mailchimp answered 429 Too Many Requests"),
    ("503", "Mailchimp answered 503 Service Unavailable"),
    ("403", "Mailchimp answered 403 without a body"),
    ("drop", "Mailchimp unreachable (connection dropped)"),
    ("cut", "Mailchimp unreachable (answer cut off)"),
])
def test_each_wait_is_reported_with_its_cause(mc, kind, what):
    client = mc.client(backoff=0.02)
    seen = []
    client.on_retry = lambda *report: seen.append(report)
    mc.emu.faults.queue(kind, 2)
    client.get_list(LIST)
    assert [(w, n, of) for w, n, of, _ in seen] == [(what, 1, 6), (what, 2, 6)]
    assert [wait for *_, wait in seen] == [slept for _, slept in client.pauses]


def test_the_default_report_is_one_line_on_stderr_per_wait_without_the_key(mc, capfd):
    client = mc.client(backoff=0.02, retries=3)
    mc.emu.faults.configure(rate_drop=1.0)
    with pytest.raises(MailchimpError):
        client.get_list(LIST)
    lines = capfd.readouterr().err.splitlines()
    assert len(lines) == 3  # three waits; the fourth failure is the caller's to report
    for n, line in enumerate(lines, 1):
        assert re.fullmatch(rf"civimc-audit: Mailchimp unreachable \(connection dropped\), "
                            rf"retry {n} of 3 in \d+\.\d s", line), line
        assert KEY.split("-")[0] not in line


def test_a_refused_connection_is_named_and_retried(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv(ENV_MAILCHIMP_API_KEY, KEY)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = MailchimpClient(MailchimpSettings(list_id=LIST, retries=2,
                                               base_url=f"http://127.0.0.1:{port}/3.0"),
                             backoff=0.01)
    with pytest.raises(MailchimpError, match="unreachable .* after 3 attempt"):
        client.ping()
    err = capfd.readouterr().err
    assert err.count("Mailchimp unreachable (connection refused), retry") == 2
    assert client.stats["ConnectionError"] == 3 and client.stats["retries"] == 2


def test_no_retry_is_reported_for_a_final_answer(mc):
    client = mc.client()
    seen = []
    client.on_retry = lambda *report: seen.append(report)
    with pytest.raises(MailchimpError):
        client.get(f"/lists/{LIST}/members/nobody@example.org")
    assert seen == [] and not client.pauses


def test_waits_double_up_to_the_cap_with_equal_jitter(mc):
    client = mc.client(backoff=0.01, retries=5)
    client.backoff_cap = 0.04
    mc.emu.faults.queue("500", 5)
    client.get_list(LIST)
    caps = [min(0.04, 0.01 * 2 ** i) for i in range(5)]
    assert [a for a, _ in client.pauses] == list(range(5))
    for d, (_, slept) in zip(caps, client.pauses, strict=True):
        assert d / 2 <= slept <= d


def test_transport_failures_are_named_without_the_url():
    import http.client

    import requests
    import urllib3

    from civimc_audit.mailchimp.client import describe_transport_error

    url = "http://127.0.0.1:9/3.0/lists/x?secret=1"
    dropped = requests.ConnectionError(urllib3.exceptions.ProtocolError(
        "Connection aborted.", http.client.RemoteDisconnected("closed")))
    assert describe_transport_error(dropped) == "connection dropped"
    assert describe_transport_error(requests.ReadTimeout(url)) == "timed out"
    assert describe_transport_error(urllib3.exceptions.ReadTimeoutError(None, url, "slow")) == \
        "timed out"
    assert describe_transport_error(requests.exceptions.ChunkedEncodingError(url)) == \
        "answer cut off"
    assert describe_transport_error(requests.ConnectionError(url)) == \
        "connection failed or dropped"
