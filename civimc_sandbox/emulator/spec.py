"""Optional check of emulator traffic against the Mailchimp Swagger 2.0 spec.

Set ``emu.spec_checker = SpecChecker(path_to_swagger_json)`` and every call
that goes through the dispatcher (direct HTTP and /batches operations) is
checked: query parameter names, types and enums, the JSON request body
against the operation's body schema (closed: an undeclared key is reported,
which catches client typos), and the response against the response schema
(open, collections checked on their first few items to stay cheap).

``mode="record"`` (default) appends findings to ``checker.violations`` for a
test to assert on; ``mode="reject"`` also answers a request that breaks the
spec with 400 "Invalid Resource", like a strict server would.

``jsonschema`` is imported lazily: it is a development dependency only.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

# Spec "required" lists that the API's own descriptions relax: PUT needs
# email_address/status_if_new "only if the email address is not already
# present on the list".
_RELAXED_REQUIRED = {("put", "/lists/{list_id}/members/{subscriber_hash}")}
# Query parameters every endpoint accepts in practice.
_ALWAYS_OK = {"fields", "exclude_fields"}


def resolve_refs(node, root: dict, seen: tuple = ()):
    """`node` with every local `$ref` ("#/a/b") inlined; a cycle becomes `{}`."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            if ref in seen:
                return {}
            target = root
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            return resolve_refs(target, root, seen + (ref,))
        return {k: resolve_refs(v, root, seen) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve_refs(v, root, seen) for v in node]
    return node


def close_schema(schema):
    """Objects with declared properties accept no other keys."""
    if isinstance(schema, dict):
        out = {k: close_schema(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [close_schema(v) for v in schema]
    return schema


def _truncate(body, max_items: int):
    """Shallow copy of a collection response with each top-level array cut short."""
    if isinstance(body, dict) and max_items:
        return {k: (v[:max_items] if isinstance(v, list) else v) for k, v in body.items()}
    return body


class SpecChecker:
    def __init__(self, spec_path: str | Path, *, mode: str = "record", max_items: int = 5):
        if mode not in ("record", "reject"):
            raise ValueError("mode must be 'record' or 'reject'")
        self.spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
        self.mode = mode
        self.max_items = max_items
        self.violations: list[dict] = []
        self._validators: dict = {}
        self._lock = threading.Lock()

    # --- lookups -------------------------------------------------------------
    def _operation(self, method: str, template: str) -> dict | None:
        item = self.spec.get("paths", {}).get(template)
        return None if item is None else item.get(method.lower())

    def _validator(self, key, schema_fn):
        with self._lock:
            v = self._validators.get(key)
        if v is None:
            import jsonschema  # development dependency, only needed when checking

            schema = schema_fn()
            v = None if schema is None else jsonschema.Draft4Validator(schema)
            with self._lock:
                self._validators[key] = v
        return v

    def _body_schema(self, method: str, template: str):
        op = self._operation(method, template) or {}
        for p in op.get("parameters", []):
            if p.get("in") == "body":
                schema = close_schema(resolve_refs(p["schema"], self.spec))
                if (method.lower(), template) in _RELAXED_REQUIRED:
                    schema.pop("required", None)
                return schema
        return None

    def _response_schema(self, method: str, template: str, status: int):
        op = self._operation(method, template) or {}
        responses = op.get("responses", {})
        resp = responses.get(str(status)) or (responses.get("default") if status >= 400 else None)
        if not resp or "schema" not in resp:
            return None
        return resolve_refs(resp["schema"], self.spec)

    # --- checks ------------------------------------------------------------------
    def _report(self, kind: str, method: str, path: str, messages: list[str]) -> list[str]:
        if messages:
            with self._lock:
                self.violations.extend({"kind": kind, "method": method, "path": path, "message": m}
                                       for m in messages)
        return messages

    def check_request(self, method: str, template: str, path: str, query: dict, body) -> list[str]:
        op = self._operation(method, template)
        if op is None:
            return self._report("request", method, path, [f"{method} {template} is not in the spec"])
        msgs = []
        params = {p["name"]: p for p in op.get("parameters", []) if p.get("in") == "query"}
        for name, value in query.items():
            p = params.get(name)
            if p is None:
                if name not in _ALWAYS_OK:
                    msgs.append(f"unknown query parameter {name!r}")
                continue
            t = p.get("type")
            if t == "integer":
                try:
                    int(value)
                except (TypeError, ValueError):
                    msgs.append(f"query {name}={value!r} is not an integer")
            elif t == "boolean" and str(value).lower() not in ("true", "false"):
                msgs.append(f"query {name}={value!r} is not a boolean")
            if "enum" in p:
                msgs += _enum_problems(name, value, p)
        if body is not None and method.upper() in ("POST", "PUT", "PATCH"):
            v = self._validator(("req", method.lower(), template),
                                lambda: self._body_schema(method, template))
            if v is not None:
                msgs += [f"body{_where(e)}: {e.message}" for e in v.iter_errors(body)]
        return self._report("request", method, path, msgs)

    def check_response(self, method: str, template: str, path: str, status: int, body) -> list[str]:
        if body is None:
            return []
        v = self._validator(("resp", method.lower(), template, status >= 400 or status),
                            lambda: self._response_schema(method, template, status))
        if v is None:
            return []
        msgs = [f"response {status}{_where(e)}: {e.message}"
                for e in v.iter_errors(_truncate(body, self.max_items))]
        return self._report("response", method, path, msgs)


def _enum_problems(name: str, value, param: dict) -> list[str]:
    """A query value against its parameter's enum. A comma-separated array (`collectionFormat`
    csv) is checked value by value: the published spec gives e.g. `activity_filters` an enum of
    one-element lists, which would reject the `open,bounce,click` its own description shows."""
    allowed = [x for e in param["enum"] for x in (e if isinstance(e, list) else [e])]
    if param.get("type") == "array" and param.get("collectionFormat", "csv") == "csv":
        values = str(value).split(",")
    else:
        values = [value]
    bad = [v for v in values if v not in allowed]
    return [f"query {name}={value!r}: {', '.join(map(repr, bad))} not one of {allowed}"] if bad else []


def _where(e) -> str:
    return (" at " + "/".join(str(p) for p in e.absolute_path)) if e.absolute_path else ""
