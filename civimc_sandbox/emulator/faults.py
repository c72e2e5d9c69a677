"""Fault injection: the failures a client of the real API must survive.

Mailchimp under load answers with 429s, 5xx problem documents, a bodiless 403
or 429 ("At exceptionally high volumes, you may receive an HTTP 429 or 403
without a JSON body"), slow responses, or drops the connection.  Each eligible
request draws the same number of values from a seeded RNG, so a test with a
fixed seed and a sequential client sees the same faults on every run.
"""

from __future__ import annotations

import random
import threading
from collections import Counter, deque

#: Kinds accepted by :meth:`Faults.queue`.
KINDS = ("429", "429-bare", "500", "503", "403", "drop", "drop-after", "cut", "slow", "garbled",
         "echo-key")


class Faults:
    """Runtime-switchable fault settings (all rates are probabilities in [0, 1]).

    ``rate_429``       problem+json 429 "Too Many Requests"
    ``rate_429_bare``  429 with an empty body
    ``rate_5xx``       problem+json 500 or 503 (picked by the RNG)
    ``rate_403``       403 with an empty body
    ``rate_drop``      close the socket without answering
    ``rate_drop_after`` handle the request, then close the socket without answering (the
                       change is made but the client never hears of it)
    ``rate_cut``       handle the request, then send the headers and half the body (its
                       Content-Length promising all of it) and close the socket
    ``rate_slow``      sleep ``slow_seconds`` before handling (combines with the others)

    ``include_ping``   also fault ``GET /ping`` (off so auth checks stay reliable)
    ``match``          optional ``callable(method, path) -> bool`` limiting eligible requests
    ``queue(kind, n)`` forces the next ``n`` eligible requests to get ``kind``; two kinds
                       exist only as queued faults: ``garbled`` (the request is handled and
                       answered 200 with half its JSON body, the Content-Length saying that
                       half: a well-framed answer that is not JSON) and ``echo-key`` (a 400
                       problem whose detail repeats the API key the request carried, as a
                       careless proxy or error page might)
    ``injected``       Counter of the faults produced so far
    """

    def __init__(self, seed: int | None = 0):
        self.rate_429 = 0.0
        self.rate_429_bare = 0.0
        self.rate_5xx = 0.0
        self.rate_403 = 0.0
        self.rate_drop = 0.0
        self.rate_drop_after = 0.0
        self.rate_cut = 0.0
        self.rate_slow = 0.0
        self.slow_seconds = 0.5
        self.include_ping = False
        self.match = None
        self.injected: Counter = Counter()
        self._queue: deque = deque()
        self._lock = threading.Lock()
        self._rng = random.Random(seed)

    def seed(self, seed: int | None) -> None:
        """Restart the random stream (same seed => same faults for the same requests)."""
        with self._lock:
            self._rng = random.Random(seed)

    def configure(self, **settings) -> Faults:
        for k, v in settings.items():
            if not hasattr(self, k) or k.startswith("_"):
                raise AttributeError(f"unknown fault setting {k!r}")
            setattr(self, k, v)
        return self

    def queue(self, kind: str, times: int = 1) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {KINDS}")
        with self._lock:
            self._queue.extend([kind] * times)

    def reset(self) -> None:
        """Turn every fault off (keeps the seed position and the ``injected`` counts)."""
        with self._lock:
            self.rate_429 = self.rate_429_bare = self.rate_5xx = 0.0
            self.rate_403 = self.rate_drop = self.rate_slow = self.rate_drop_after = 0.0
            self.rate_cut = 0.0
            self.match = None
            self._queue.clear()

    @property
    def active(self) -> bool:
        return bool(self._queue) or any((self.rate_429, self.rate_429_bare, self.rate_5xx,
                                         self.rate_403, self.rate_drop, self.rate_slow,
                                         self.rate_drop_after, self.rate_cut))

    def eligible(self, method: str, api_path: str) -> bool:
        if api_path.rstrip("/") == "/ping" and not self.include_ping:
            return False
        return self.match is None or bool(self.match(method, api_path))

    def decide(self, method: str, api_path: str) -> tuple[str | None, float]:
        """Return ``(kind or None, delay_seconds)`` for one request."""
        if not self.active or not self.eligible(method, api_path):
            return None, 0.0
        with self._lock:
            if self._queue:
                kind = self._queue.popleft()
                self.injected[kind] += 1
                return (None, self.slow_seconds) if kind == "slow" else (kind, 0.0)
            u, v, w = self._rng.random(), self._rng.random(), self._rng.random()
        kind = None
        edge = 0.0
        for name, rate in (("429", self.rate_429), ("429-bare", self.rate_429_bare),
                           ("5xx", self.rate_5xx), ("403", self.rate_403),
                           ("drop", self.rate_drop), ("drop-after", self.rate_drop_after),
                           ("cut", self.rate_cut)):
            edge += rate
            if u < edge:
                kind = name
                break
        if kind == "5xx":
            kind = "500" if w < 0.5 else "503"
        delay = self.slow_seconds if v < self.rate_slow else 0.0
        with self._lock:
            if kind:
                self.injected[kind] += 1
            if delay:
                self.injected["slow"] += 1
        return kind, delay
