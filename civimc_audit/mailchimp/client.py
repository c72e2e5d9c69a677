"""A small, polite client for the Mailchimp Marketing API v3.

HTTP Basic auth with the API key (base URL from the key's data centre unless overridden), one
pooled `requests` session per thread, a timeout on every call, and retries with exponential
backoff and jitter on exactly the failures Mailchimp documents as transient: 429, 5xx, a 403
without a body ("at exceptionally high volumes"), timeouts and dropped connections. Other 4xx
answers are final and become a `MailchimpError` naming Mailchimp's title and detail — never the
key. Each wait before a retry is reported to `on_retry` (by default one line on stderr), so a
slow run says why it is slow.

The retrying is tenacity's, driven by our own test of each answer rather than urllib3's `Retry`:
urllib3 decides on the status code alone and cannot tell a bodiless 403 (retry) from a 403
problem document such as "Wrong Datacenter" (final).
"""

from __future__ import annotations

import http.client
import random
import sys
import threading
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import orjson
import requests
import urllib3
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from civimc_audit.common.emails import member_hash  # noqa: F401 - Mailchimp's id, importable here too
from civimc_audit.config import API_KEY_RE, ENV_MAILCHIMP_API_KEY, MailchimpSettings, redact
from civimc_audit.config.settings import is_loopback
from civimc_audit.errors import MailchimpError

USER_AGENT = "civimc-audit"
MALFORMED = "malformed body"  # the stats key (and failure kind) of a 2xx answer not JSON
CONNECT_TIMEOUT = 10.0
# Failures worth another attempt; anything else the server said is its final answer.
_TRANSPORT_ERRORS = (requests.ConnectionError, requests.Timeout,
                     requests.exceptions.ChunkedEncodingError,
                     requests.exceptions.ContentDecodingError,
                     urllib3.exceptions.HTTPError)  # a body cut off or timed out mid-read
# What an operating-system error under a transport error means, most telling first.
_CAUSES = ((http.client.RemoteDisconnected, "connection dropped"),  # (a ConnectionResetError)
           (ConnectionRefusedError, "connection refused"),
           (ConnectionResetError, "connection reset"),
           (ConnectionAbortedError, "connection aborted"))

#: on_retry(what, retry, of, wait_seconds): told before each wait; `what` names the failure.
OnRetry = Callable[[str, int, int, float], None]


def describe_transport_error(exc: BaseException) -> str:
    """A few words for a failure below HTTP (no URL, so nothing that could carry a secret)."""
    if isinstance(exc, (requests.Timeout, urllib3.exceptions.TimeoutError)):  # (mid-body too)
        return "timed out"
    seen, todo = set(), [exc]
    while todo:  # the OS error sits somewhere under requests' and urllib3's wrappers
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        for kind, words in _CAUSES:
            if isinstance(e, kind):
                return words
        todo += [x for x in (e.__cause__, e.__context__, getattr(e, "reason", None), *e.args)
                 if isinstance(x, BaseException)]
    if isinstance(exc, requests.ConnectionError):
        return "connection failed or dropped"
    return "answer cut off"


def _seconds(wait: float) -> str:
    return f"{wait:.1f}" if wait < 10 else f"{wait:.0f}"


def report_retry(what: str, retry: int, of: int, wait: float) -> None:
    """The default `on_retry`: one line on stderr per wait."""
    sys.stderr.write(f"civimc-audit: {what}, retry {retry} of {of} in {_seconds(wait)} s\n")
    sys.stderr.flush()


class _Transient(Exception):
    """A failure worth another attempt, carried from one attempt to tenacity: the answer that
    said "later" (`resp`) or the transport error's class name (`kind`)."""

    def __init__(self, what: str, *, resp: requests.Response | None = None,
                 kind: str | None = None):
        super().__init__(what)
        self.what, self.resp, self.kind = what, resp, kind


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
    tests and benchmarks can state what a job cost. `on_retry` is told of each wait before a
    retry (default: `report_retry`, one line on stderr).
    """

    def __init__(self, settings: MailchimpSettings, *, retries: int | None = None,
                 backoff: float = 0.5, backoff_cap: float = 30.0,
                 timeout: float | None = None, on_retry: OnRetry | None = report_retry):
        self.settings = settings
        self.base_url = settings.url
        self.retries = settings.retries if retries is None else retries
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self.timeout = settings.timeout if timeout is None else timeout
        self.max_connections = settings.max_connections
        self.stats: Counter = Counter()
        self.pauses: deque[tuple[int, float]] = deque(maxlen=1000)  # (attempt, seconds slept)
        self.on_retry = on_retry
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
            # This machine is never reached through a proxy: an HTTP_PROXY from the
            # environment would otherwise receive a loopback request, key and all, in clear.
            s.trust_env = not is_loopback((urlsplit(self.base_url).hostname or "").lower())
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

    def _wait(self, state: RetryCallState) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random. Attempt i (from
        0) waits between d/2 and d, d = backoff * 2**i capped at backoff_cap."""
        d = min(self.backoff_cap, self.backoff * (2 ** (state.attempt_number - 1)))
        with self._lock:
            return d / 2 + self._rng.uniform(0, d / 2)

    def _before_sleep(self, state: RetryCallState) -> None:
        outcome = state.outcome
        assert outcome is not None, "tenacity sleeps only after an attempt has failed"
        failure = outcome.exception()
        assert isinstance(failure, _Transient), "only _Transient is retried"
        wait = state.upcoming_sleep
        if failure.resp is not None:
            self._count(str(failure.resp.status_code))
        self._count("retries")
        with self._lock:
            self.pauses.append((state.attempt_number - 1, wait))
        if self.on_retry is not None:
            self.on_retry(failure.what, state.attempt_number, self.retries, wait)

    def send(self, method: str, path: str, *, params=None, json=None,
             check: Callable[[bytes], object] | None = orjson.loads) -> requests.Response:
        """One API call with retries; returns the successful response or raises.

        `check(body)` (default: that it is JSON) raising ValueError says a successful answer's
        body is not what it must be (cut short or garbled behind a 200): that attempt counts
        as a transient failure, retried like a dropped connection, then a MailchimpError
        saying so."""
        data = None if json is None else orjson.dumps(json)
        retrying = Retrying(stop=stop_after_attempt(self.retries + 1), wait=self._wait,
                            retry=retry_if_exception_type(_Transient),
                            before_sleep=self._before_sleep, reraise=True)
        attempts = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    return self._attempt(method, path, params, data, attempts, check)
        except _Transient as failure:  # the last attempt failed too
            if failure.resp is not None:
                raise self._error(failure.resp, method, path, attempts) from None
            if failure.kind == MALFORMED:
                raise MailchimpError(
                    f"Mailchimp API at {self.base_url} answered {method} {path} with a body that "
                    f"is not whole JSON (cut short or garbled) {attempts} time(s); nothing was "
                    "stored from it, try again later") from None
            raise MailchimpError(
                f"Mailchimp API at {self.base_url} unreachable for {method} {path} "
                f"after {attempts} attempt(s): {failure.kind}") from None
        raise AssertionError("unreachable")  # tenacity returns the answer or raises

    def _attempt(self, method: str, path: str, params, data: bytes | None, attempts: int,
                 check: Callable[[bytes], object] | None = None) -> requests.Response:
        """One request: the answer, or `_Transient` (try again), or the final MailchimpError.

        Redirects are never followed: the API key goes only to the configured API root."""
        self._count("requests")
        headers = {"Content-Type": "application/json"} if data is not None else None
        try:
            resp = self._session().request(method, self.base_url + path, params=params,
                                           data=data, headers=headers, stream=True,
                                           timeout=(CONNECT_TIMEOUT, self.timeout),
                                           allow_redirects=False, verify=True)
            _read_body(resp)
        except _TRANSPORT_ERRORS as exc:
            kind = type(exc).__name__
            self._count(kind)
            raise _Transient(f"Mailchimp unreachable ({describe_transport_error(exc)})",
                             kind=kind) from None
        if 300 <= resp.status_code < 400:
            raise MailchimpError(f"Mailchimp {method} {path}: {resp.status_code} redirect to "
                                 "another address, not followed (the API key goes only to "
                                 f"{self.base_url})", status=resp.status_code)
        if resp.status_code < 400:
            if check is not None and resp.content:
                try:
                    check(resp.content)
                except ValueError:
                    self._count(MALFORMED)
                    raise _Transient(f"Mailchimp answered {resp.status_code} with a body that "
                                     "is not whole JSON", kind=MALFORMED) from None
            return resp
        if not is_transient(resp):
            raise self._error(resp, method, path, attempts)
        what = (f"Mailchimp answered {resp.status_code} without a body"
                if resp.status_code == 403 else
                f"Mailchimp answered {resp.status_code} {resp.reason or ''}".rstrip())
        raise _Transient(what, resp=resp)

    def request(self, method: str, path: str, *, params=None, json=None) -> dict | None:
        """One API call; the parsed JSON answer (None for 204)."""
        resp = self.send(method, path, params=params, json=json)
        if resp.status_code == 204 or not resp.content:
            return None
        return orjson.loads(resp.content)

    def _error(self, resp: requests.Response, method: str, path: str,
               attempts: int) -> MailchimpError:
        return self.problem(resp.status_code, resp.content, method, path, attempts,
                            reason=resp.reason, transient=is_transient(resp))

    def problem(self, code: int, content: bytes | str, method: str, path: str,
                attempts: int = 1, *, reason: str | None = None,
                transient: bool = False) -> MailchimpError:
        """The MailchimpError for an error answer `code` with body `content` (a problem
        document, or anything): the same words whether the answer came straight back or as
        one operation's result in a batch archive."""
        title = detail = None
        body: dict = {}
        raw = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
        try:  # redacted first: an answer may echo what the request carried (its key, say)
            body = orjson.loads(redact(raw)) if raw else {}
            title, detail = body.get("title"), body.get("detail")
        except (orjson.JSONDecodeError, AttributeError):
            body = {}
        title = title or reason or http.client.responses.get(code) or "error"
        if code == 401 or (code == 403 and title == "Wrong Datacenter"):
            text = self._auth_problem(code, title)
        else:
            text = f"Mailchimp {method} {path}: {code} {title}"
            if detail:
                text += f" — {detail}"
            if transient:
                text += f" (gave up after {attempts} attempts)"
        return MailchimpError(" ".join(text.split()), status=code, title=title, detail=detail,
                              errors=body.get("errors") if isinstance(body, dict) else None,
                              misconfigured=code == 401 or title in ("Wrong Datacenter",
                                                                     "API Key Invalid"))

    def _auth_problem(self, code: int, title: str) -> str:
        key = API_KEY_RE.match(self._auth[1])
        assert key is not None, "settings.api_key checked the key's form"
        dc = key.group(1)
        where = (f"the key is for data centre {dc} but [mailchimp] base_url is {self.base_url}"
                 if self.settings.base_url else f"data centre {dc}, {self.base_url}")
        if code == 403:
            return (f"Mailchimp refused the API key in {ENV_MAILCHIMP_API_KEY}: {code} {title} "
                    f"({where}); use the data centre the key ends with")
        return (f"Mailchimp refused the API key in {ENV_MAILCHIMP_API_KEY}: {code} {title} "
                f"({where}); check that the key is current and belongs to this account "
                "and data centre")

    def fetch_archive(self, url: str) -> bytes:
        """A batch's results archive from its `response_body_url` (a pre-signed address at
        Mailchimp's storage, not the API): fetched without the API key, counted as a request
        and retried on the same transient failures as API calls."""
        retrying = Retrying(stop=stop_after_attempt(self.retries + 1), wait=self._wait,
                            retry=retry_if_exception_type(_Transient),
                            before_sleep=self._before_sleep, reraise=True)
        where = urlsplit(url)
        shown = f"{where.scheme}://{where.netloc}{where.path}"  # never the signature's query
        try:
            for attempt in retrying:
                with attempt:
                    self._count("requests")
                    try:
                        with requests.Session() as s:
                            s.trust_env = not is_loopback((where.hostname or "").lower())
                            s.headers["User-Agent"] = USER_AGENT
                            resp = s.get(url, timeout=(CONNECT_TIMEOUT, self.timeout),
                                         allow_redirects=True)
                    except _TRANSPORT_ERRORS as exc:
                        self._count(type(exc).__name__)
                        raise _Transient("batch results unreachable "
                                         f"({describe_transport_error(exc)})",
                                         kind=type(exc).__name__) from None
                    if resp.status_code == 200:
                        return resp.content
                    if resp.status_code == 429 or resp.status_code >= 500:
                        raise _Transient(f"batch results: {resp.status_code}", resp=resp)
                    raise MailchimpError(f"Mailchimp batch results {shown}: "
                                         f"{resp.status_code} {resp.reason or ''}".rstrip(),
                                         status=resp.status_code)
        except _Transient as failure:
            raise MailchimpError(f"Mailchimp batch results {shown} could not be fetched: "
                                 f"{failure.what}") from None
        raise AssertionError("unreachable")

    # --- calls -------------------------------------------------------------------------------
    def get(self, path: str, **params) -> dict:
        body = self.request("GET", path, params=params or None)
        if body is None:
            raise MailchimpError(f"Mailchimp GET {path}: an empty answer")
        return body

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
