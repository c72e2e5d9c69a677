"""A small, polite client for the Mailchimp Marketing API v3.

HTTP Basic auth with the API key (base URL from the key's data centre unless overridden), one
pooled `requests` session per thread, a timeout on every call, and retries with exponential
backoff and jitter on exactly the failures Mailchimp documents as transient: 429, 5xx, a 403
without a body ("at exceptionally high volumes"), timeouts and dropped connections. Other 4xx
answers are final and become a `MailchimpError` naming Mailchimp's title and detail — never the
key.

The retry loop is ours rather than urllib3's `Retry`: urllib3 decides on the status code alone and
cannot tell a bodiless 403 (retry) from a 403 problem document such as "Wrong Datacenter" (final).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import orjson
import requests
import urllib3
from requests.adapters import HTTPAdapter

from civimc_audit.common.emails import member_hash  # noqa: F401 - Mailchimp's id, importable here too
from civimc_audit.config import API_KEY_RE, ENV_MAILCHIMP_API_KEY, MailchimpSettings
from civimc_audit.errors import MailchimpError

USER_AGENT = "civimc-audit"
CONNECT_TIMEOUT = 10.0
# Failures worth another attempt; anything else the server said is its final answer.
_TRANSPORT_ERRORS = (requests.ConnectionError, requests.Timeout,
                     requests.exceptions.ChunkedEncodingError,
                     requests.exceptions.ContentDecodingError,
                     urllib3.exceptions.HTTPError)  # a body cut off or timed out mid-read


def is_transient(resp: requests.Response) -> bool:
    """Does this answer say "try again later" rather than "no"?"""
    code = resp.status_code
    return code == 429 or code >= 500 or (code == 403 and not resp.content)


def _read_body(resp: requests.Response) -> None:
    """Read the whole body in one call and hand the connection back to the pool.

    `Response.content` would pull a 300 KB member page through urllib3 in 10 KB chunks, each a
    round of Python calls and a system call; one read of the known length costs a fraction of
    that CPU, which on a million-member snapshot is the difference between the download and
    the parsing fighting for the same core or not.
    """
    try:
        # requests keeps a read body in `_content`; setting it makes `.content` return it.
        resp._content = resp.raw.read(decode_content=True)
        resp._content_consumed = True
    finally:
        resp.close()


class MailchimpClient:
    """One account's API endpoint; safe to share between threads.

    `stats` counts attempts (`requests`), `retries` and each transient failure kind, so
    tests and benchmarks can state what a job cost.
    """

    def __init__(self, settings: MailchimpSettings, *, retries: int | None = None,
                 backoff: float = 0.5, backoff_cap: float = 30.0,
                 timeout: float | None = None):
        self.settings = settings
        self.base_url = settings.url
        self.retries = settings.retries if retries is None else retries
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self.timeout = settings.timeout if timeout is None else timeout
        self.max_connections = settings.max_connections
        self.stats: Counter = Counter()
        self.pauses: deque[tuple[int, float]] = deque(maxlen=1000)  # (attempt, seconds slept)
        self._auth = ("civimc-audit", settings.api_key)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self._rng = random.Random()

    # --- plumbing ----------------------------------------------------------------------------
    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.auth = self._auth
            s.headers["User-Agent"] = USER_AGENT
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
            s.mount("http://", adapter)
            s.mount("https://", adapter)
            self._local.session = s
            with self._lock:
                self._sessions.append(s)
        return s

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for s in sessions:
            s.close()
        self._local = threading.local()

    def __enter__(self) -> MailchimpClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _count(self, *keys: str) -> None:
        with self._lock:
            for k in keys:
                self.stats[k] += 1

    def _pause(self, attempt: int) -> None:
        """Exponential backoff with "equal jitter": half fixed, half random."""
        d = min(self.backoff_cap, self.backoff * (2 ** attempt))
        with self._lock:
            j = self._rng.uniform(0, d / 2)
            self.pauses.append((attempt, d / 2 + j))
        time.sleep(d / 2 + j)

    def send(self, method: str, path: str, *, params=None, json=None) -> requests.Response:
        """One API call with retries; returns the successful response or raises."""
        url = self.base_url + path
        data = None if json is None else orjson.dumps(json)
        headers = {"Content-Type": "application/json"} if data is not None else None
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            self._count("requests")
            try:
                resp = self._session().request(method, url, params=params, data=data,
                                               headers=headers, stream=True,
                                               timeout=(CONNECT_TIMEOUT, self.timeout))
                _read_body(resp)
            except _TRANSPORT_ERRORS as exc:
                kind = type(exc).__name__
                self._count(kind)
                if last:
                    raise MailchimpError(
                        f"Mailchimp API at {self.base_url} unreachable for {method} {path} "
                        f"after {attempt + 1} attempt(s): {kind}") from None
            else:
                if resp.status_code < 400:
                    return resp
                if not is_transient(resp) or last:
                    raise self._error(resp, method, path, attempt + 1)
                self._count(str(resp.status_code))
            self._count("retries")
            self._pause(attempt)
        raise AssertionError("unreachable")  # the loop always returns or raises

    def request(self, method: str, path: str, *, params=None, json=None) -> dict | None:
        """One API call; the parsed JSON answer (None for 204)."""
        resp = self.send(method, path, params=params, json=json)
        if resp.status_code == 204 or not resp.content:
            return None
        return orjson.loads(resp.content)

    def _error(self, resp: requests.Response, method: str, path: str,
               attempts: int) -> MailchimpError:
        title = detail = None
        body = {}
        try:
            body = orjson.loads(resp.content) if resp.content else {}
            title, detail = body.get("title"), body.get("detail")
        except (orjson.JSONDecodeError, AttributeError):
            body = {}
        code = resp.status_code
        title = title or resp.reason or "error"
        if code == 401 or (code == 403 and title == "Wrong Datacenter"):
            text = self._auth_problem(code, title)
        else:
            text = f"Mailchimp {method} {path}: {code} {title}"
            if detail:
                text += f" — {detail}"
            if is_transient(resp):
                text += f" (gave up after {attempts} attempts)"
        return MailchimpError(" ".join(text.split()), status=code, title=title, detail=detail,
                              errors=body.get("errors") if isinstance(body, dict) else None,
                              misconfigured=code == 401 or title in ("Wrong Datacenter",
                                                                     "API Key Invalid"))

    def _auth_problem(self, code: int, title: str) -> str:
        dc = API_KEY_RE.match(self._auth[1]).group(1)
        where = (f"the key is for data centre {dc} but [mailchimp] base_url is {self.base_url}"
                 if self.settings.base_url else f"data centre {dc}, {self.base_url}")
        if code == 403:
            return (f"Mailchimp refused the API key in {ENV_MAILCHIMP_API_KEY}: {code} {title} "
                    f"({where}); use the data centre the key ends with")
        return (f"Mailchimp refused the API key in {ENV_MAILCHIMP_API_KEY}: {code} {title} "
                f"({where}); check that the key is current and belongs to this account "
                "and data centre")

    # --- calls -------------------------------------------------------------------------------
    def get(self, path: str, **params) -> dict:
        return self.request("GET", path, params=params or None)

    def ping(self) -> dict:
        return self.get("/ping")

    def server_time(self, resp: requests.Response) -> datetime | None:
        """The server's clock from a response's Date header (naive UTC), if it sent one."""
        value = resp.headers.get("Date")
        if not value:
            return None
        try:
            return parsedate_to_datetime(value).astimezone(UTC).replace(tzinfo=None)
        except (TypeError, ValueError):
            return None

    def get_list(self, list_id: str | None = None) -> dict:
        return self.get_list_response(list_id)[0]

    def get_list_response(self, list_id: str | None = None) -> tuple[dict, requests.Response]:
        """The audience object and the raw response (whose Date header snapshots use)."""
        list_id = list_id or self.settings.list_id
        try:
            resp = self.send("GET", f"/lists/{list_id}")
        except MailchimpError as exc:
            if exc.status == 404:
                raise MailchimpError(f"Mailchimp audience '{list_id}' not found at "
                                     f"{self.base_url} (check [mailchimp] list_id)", status=404,
                                     title=exc.title, misconfigured=True) from None
            raise
        return orjson.loads(resp.content), resp
