"""Issue 19 point 5: the store, run folders and CSVs are owner-only whatever the umask; the API
key and the passwords appear in no file and no output, error paths included; the key goes only
to its data centre's host or to a loopback base_url, never along a redirect, and only over
verified TLS."""

from __future__ import annotations

import os
import shutil
import ssl
import stat
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support.civicrm import db_user
from support.values import TEST_LIST_ID

from civimc_audit.config import ENV_CIVICRM_PASSWORD, ENV_MAILCHIMP_API_KEY, load_config
from civimc_audit.config.settings import MailchimpSettings
from civimc_audit.errors import ConfigError, MailchimpError
from civimc_audit.mailchimp.client import MailchimpClient
from civimc_sandbox.demo import load_seed

SECRET_HEX = "5ec4e75ec4e75ec4e75ec4e75ec4e75e"
SECRET_KEY = f"{SECRET_HEX}-us7"


def config_text(base_url: str) -> str:
    return f'[civicrm]\ngroup_id = 1\n[mailchimp]\nlist_id = "abc"\nbase_url = "{base_url}"\n'


@pytest.mark.parametrize("url", ["http://evil.example/3.0", "https://10.0.0.1/3.0",
                                 "http://us7.api.mailchimp.com/3.0",
                                 "https://us7.api.mailchimp.com.evil.example/3.0",
                                 "https://user:pw@127.0.0.1:1/3.0", "http://127.0.0.1:x/3.0"])
def test_a_base_url_elsewhere_is_refused_at_load(tmp_path, url, run_cli, monkeypatch):
    monkeypatch.setenv(ENV_MAILCHIMP_API_KEY, SECRET_KEY)
    path = tmp_path / "c.toml"
    path.write_text(config_text(url), encoding="utf-8")
    code, out, err = run_cli("--config", path, "check")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "[mailchimp] base_url" in err
    assert "this machine" in err and SECRET_HEX not in err


@pytest.mark.parametrize("url", ["http://127.0.0.1:8765/3.0", "http://[::1]:8765/3.0",
                                 "http://localhost:1/3.0", "https://127.3.4.5/3.0",
                                 "https://us7.api.mailchimp.com/3.0"])
def test_loopback_and_the_keys_own_data_centre_are_accepted(tmp_path, url, monkeypatch):
    monkeypatch.setenv(ENV_MAILCHIMP_API_KEY, SECRET_KEY)
    path = tmp_path / "c.toml"
    path.write_text(config_text(url), encoding="utf-8")
    assert load_config(path).mailchimp.url == url


def test_a_mailchimp_host_of_another_data_centre_is_refused(monkeypatch):
    monkeypatch.setenv(ENV_MAILCHIMP_API_KEY, SECRET_KEY)
    settings = MailchimpSettings(list_id="abc", base_url="https://us6.api.mailchimp.com/3.0")
    with pytest.raises(ConfigError, match="data centre us6.*for us7"):
        settings.url  # noqa: B018


class _Recorder(BaseHTTPRequestHandler):
    """Answers every request with `answer` (status, headers) and records its headers."""

    def do_GET(self):  # noqa: N802 - http.server's name
        self.server.seen.append(dict(self.headers))
        status, headers = self.server.answer
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def serve(answer, tls_context=None):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.seen, server.answer = [], answer
    if tls_context is not None:
        server.socket = tls_context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_redirect_is_not_followed(monkeypatch):
    monkeypatch.setenv(ENV_MAILCHIMP_API_KEY, SECRET_KEY)
    elsewhere = serve((200, {}))
    port = elsewhere.server_address[1]
    here = serve((302, {"Location": f"http://localhost:{port}/3.0/ping"}))
    try:
        settings = MailchimpSettings(list_id="abc",
                                     base_url=f"http://127.0.0.1:{here.server_address[1]}/3.0")
        with MailchimpClient(settings, retries=0) as client, \
                pytest.raises(MailchimpError, match="302 redirect.*not followed") as caught:
            client.ping()
        assert SECRET_HEX not in str(caught.value)
        assert len(here.seen) == 1 and elsewhere.seen == []
    finally:
        here.shutdown()
        elsewhere.shutdown()


def test_a_proxy_from_the_environment_never_sees_a_loopback_request(monkeypatch):
    monkeypatch.setenv(ENV_MAILCHIMP_API_KEY, SECRET_KEY)
    proxy = serve((200, {}))
    api = serve((200, {"Content-Type": "application/json"}))
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(var, f"http://127.0.0.1:{proxy.server_address[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    try:
        settings = MailchimpSettings(list_id="abc",
                                     base_url=f"http://127.0.0.1:{api.server_address[1]}/3.0")
        with MailchimpClient(settings, retries=0) as client:
            assert client.ping() == {}
        assert len(api.seen) == 1 and proxy.seen == []
    finally:
        proxy.shutdown()
        api.shutdown()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_is_verified_and_cannot_be_turned_off(tmp_path, monkeypatch):
    """A loopback https server with a self-signed certificate never gets a request, whatever
    the environment says about certificates."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server = serve((200, {"Content-Type": "application/json"}), ctx)
    monkeypatch.setenv(ENV_MAILCHIMP_API_KEY, SECRET_KEY)
    monkeypatch.setenv("CURL_CA_BUNDLE", "")  # once a way to switch verification off
    monkeypatch.setenv("PYTHONHTTPSVERIFY", "0")
    try:
        settings = MailchimpSettings(list_id="abc",
                                     base_url=f"https://127.0.0.1:{server.server_address[1]}/3.0")
        with MailchimpClient(settings, retries=0) as client, \
                pytest.raises(MailchimpError, match="unreachable") as caught:
            client.ping()
        assert SECRET_HEX not in str(caught.value)
        assert server.seen == []
        assert "verify" not in MailchimpSettings.model_fields
    finally:
        server.shutdown()


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*")]


def test_a_key_echoed_in_an_error_body_is_not_shown_or_kept(civi_db, emulator, make_config,
                                                           run_cli, tmp_path, monkeypatch):
    emulator.api_key = SECRET_KEY
    config = make_config()
    monkeypatch.setenv(ENV_MAILCHIMP_API_KEY, SECRET_KEY)
    emulator.faults.queue("echo-key", 20)
    code, out, err = run_cli("--config", config, "snapshot", "--mailchimp-only")
    assert code in (2, 3), err
    assert "did not validate" in err and "***" in err
    for text in (out, err):
        assert SECRET_HEX not in text
    code, out, err = run_cli("--config", config, "run")
    assert code == 3, err
    for text in (out, err):
        assert SECRET_HEX not in text
    for path in files_under(tmp_path):
        if path.is_file():
            assert SECRET_HEX.encode() not in path.read_bytes(), path


UMASK_CHILD = """
import os, sys
os.umask(0)
from civimc_audit.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_secrets_appear_nowhere_and_files_are_owner_only(civi_db, emulator, make_config,
                                                       tmp_path, monkeypatch):
    """The whole workflow run as a user would (a fresh process with umask 0), with a distinctive
    database password and API key, then a refused password and a refused key."""
    load_seed(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID, 2026)
    emulator.api_key = SECRET_KEY
    with db_user(civi_db, "SELECT") as (user, password):
        config = make_config(user=user)
        monkeypatch.setenv(ENV_CIVICRM_PASSWORD, password)
        monkeypatch.setenv(ENV_MAILCHIMP_API_KEY, SECRET_KEY)
        secrets = [password, SECRET_HEX]

        def cli(*args):
            done = subprocess.run([sys.executable, "-c", UMASK_CHILD, "--config", str(config),
                                   *args], capture_output=True, text=True, env=dict(os.environ),
                                  cwd=tmp_path, timeout=600)
            for secret in secrets:
                assert secret not in done.stdout + done.stderr, args
            return done

        for args in (["snapshot"], ["reconcile"], ["plan"], ["outcomes", "--format", "csv"],
                     ["review", "--export", str(tmp_path / "review.csv")], ["run"],
                     ["export", "2", "--format", "csv"]):
            done = cli(*args)
            assert done.returncode == 0, (args, done.stderr)
        monkeypatch.setenv(ENV_CIVICRM_PASSWORD, password[::-1])  # refused, also distinctive
        secrets.append(password[::-1])
        assert cli("snapshot", "--civicrm-only").returncode == 2
        monkeypatch.setenv(ENV_MAILCHIMP_API_KEY, SECRET_HEX[::-1] + "-us7")
        secrets.append(SECRET_HEX[::-1])
        assert cli("snapshot", "--mailchimp-only").returncode == 2
    made = files_under(tmp_path / "runs") + [tmp_path / "audit.duckdb", tmp_path / "review.csv"]
    assert any(p.name == "audit.html" for p in made)
    for path in [*made, *files_under(tmp_path)]:
        if path.is_file() and path.suffix != ".toml":
            for secret in secrets:
                assert secret.encode() not in path.read_bytes(), (path, secret)
    for path in made:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


