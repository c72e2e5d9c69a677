"""A small, polite client for the Mailchimp Marketing API v3.

HTTP Basic auth with the API key, a pooled `requests` session with urllib3 retries (exponential
backoff with jitter) on 429, 5xx and dropped connections, and problem+json errors turned into
`MailchimpError`s that name Mailchimp's title and detail — never the key.
"""

from __future__ import annotations

import hashlib

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..config import MailchimpSettings
from ..errors import MailchimpError

USER_AGENT = "civimc-audit"


def member_hash(email: str) -> str:
    """Mailchimp's subscriber hash: md5 of the lower-cased address."""
    return hashlib.md5(email.strip().lower().encode("utf-8")).hexdigest()


class MailchimpClient:
    """One audience's API endpoint; safe to share between threads for GETs."""

    def __init__(self, settings: MailchimpSettings, *, retries: int | None = None,
                 backoff: float = 0.5):
        retries = settings.retries if retries is None else retries
        self.settings = settings
        self.base_url = settings.url
        self.session = requests.Session()
        self.session.auth = ("civimc-audit", settings.api_key)
        self.session.headers["User-Agent"] = USER_AGENT
        retry = Retry(total=retries, connect=retries, read=retries, status=retries,
                      backoff_factor=backoff, backoff_jitter=backoff,
                      status_forcelist=(429, 500, 502, 503, 504),
                      allowed_methods=frozenset({"GET", "HEAD"}), raise_on_status=False,
                      respect_retry_after_header=True)
        adapter = HTTPAdapter(max_retries=retry, pool_connections=10,
                              pool_maxsize=settings.max_connections)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        self.session.close()

    def request(self, method: str, path: str, *, params=None, json=None) -> dict | None:
        url = self.base_url + path
        try:
            resp = self.session.request(method, url, params=params, json=json,
                                        timeout=(10, self.settings.timeout))
        except requests.RequestException as exc:
            raise MailchimpError(f"Mailchimp API at {self.base_url} unreachable for "
                                 f"{method} {path}: {type(exc).__name__}") from None
        if resp.status_code >= 400:
            raise self._error(resp, method, path)
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    def _error(self, resp: requests.Response, method: str, path: str) -> MailchimpError:
        title = detail = None
        try:
            body = resp.json()
            title, detail = body.get("title"), body.get("detail")
        except ValueError:
            pass
        title = title or resp.reason or "error"
        text = f"Mailchimp {method} {path}: {resp.status_code} {title}"
        if detail:
            text += f" — {detail}"
        return MailchimpError(text, status=resp.status_code, title=title, detail=detail)

    def get(self, path: str, **params) -> dict:
        return self.request("GET", path, params=params or None)

    def ping(self) -> dict:
        return self.get("/ping")

    def get_list(self, list_id: str | None = None) -> dict:
        list_id = list_id or self.settings.list_id
        try:
            return self.get(f"/lists/{list_id}")
        except MailchimpError as exc:
            if exc.status == 404:
                raise MailchimpError(f"Mailchimp audience '{list_id}' not found "
                                     "(check [mailchimp] list_id)", status=404,
                                     title=exc.title) from None
            raise
