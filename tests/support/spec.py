"""Checks recorded emulator traffic against the Mailchimp API spec (Swagger 2.0 JSON schemas).

Every request a client sent (method, path, query, JSON body) and every response the emulator
returned — including problem documents produced by the connection limit, auth and injected
faults, which never reach the emulator's own dispatcher-level checker — is validated with
jsonschema through `civimc_sandbox.emulator.SpecChecker` (request bodies closed: an undeclared key
is an error; responses checked item by item up to `max_items` per collection, 0 = all).
"""

from __future__ import annotations

from pathlib import Path

from civimc_sandbox.emulator import SpecChecker
from civimc_sandbox.emulator.api import route
from civimc_sandbox.emulator.problems import ApiError

SPEC_PATH = Path(__file__).resolve().parent / "data" / "mailchimp-marketing-api.swagger.json"
API_PREFIX = "/3.0"

_checkers: dict[int, SpecChecker] = {}


def checker(max_items: int = 0) -> SpecChecker:
    c = _checkers.get(max_items)
    if c is None:
        c = _checkers[max_items] = SpecChecker(SPEC_PATH, max_items=max_items)
    c.violations.clear()
    return c


def traffic_violations(requests, max_items: int = 0) -> list[str]:
    """Spec violations in recorded requests (an empty list when all is well)."""
    c = checker(max_items)
    out = []
    for r in requests:
        if not r.path.startswith(API_PREFIX):
            continue  # batch result archives live outside the API
        api_path = r.path[len(API_PREFIX):] or "/"
        try:
            _, _, template = route(r.method, api_path)
        except ApiError:
            out.append(f"{r.method} {r.path}: not an operation of the spec")
            continue
        out += [f"{r.method} {r.path}: {m}"
                for m in c.check_request(r.method, template, r.path, r.query, r.body)]
        if r.response is not None:
            out += [f"{r.method} {r.path}: {m}"
                    for m in c.check_response(r.method, template, r.path, r.status, r.response)]
    return out


def assert_traffic_matches_spec(emu, max_items: int = 0) -> int:
    """Assert every recorded request/response of `emu` fits the spec; returns how many."""
    assert emu.record_requests and emu.record_bodies, "recording is off: nothing to check"
    bad = traffic_violations(emu.requests, max_items)
    assert not bad, "\n".join(bad[:10])
    return len(emu.requests)
