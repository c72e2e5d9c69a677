"""``/batches``: asynchronous batch operations and their results archive.

A batch moves pending -> started -> finished.  It finishes on the
``emu.batch_polls_to_finish``-th ``GET /batches/{id}`` or after
``emu.batch_finish_after`` seconds, whichever comes first (either may be
``None``).  Its operations then run through the same dispatcher as direct
calls, and the results are packed like Mailchimp's: a ``.tar.gz`` of JSON
files, each a JSON array of ``{status_code, operation_id, response}`` with
``response`` the JSON body as a *string*.  Results are spread over several
files and shuffled (seeded by the batch id) because real clients must not
rely on order; the archive is served by the emulator itself at
``response_body_url`` (no auth, like the real pre-signed S3 URL).  It is gzip like
the real one, at compression level 1: a few hundred thousand small results pack in a
fraction of a second.  An operation's ``params`` (``fields`` included) are its query,
exactly as for a direct call.
"""

from __future__ import annotations

import hashlib
import io
import random
import secrets
import tarfile
import threading
import time

import orjson

from civimc_sandbox.emulator import problems as P
from civimc_sandbox.emulator.records import iso

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
RESULTS_PREFIX = "/_emulator/batch-results/"


class Batch:
    def __init__(self, batch_id: str, ops: list[dict], submitted: int):
        self.id = batch_id
        self.ops = ops
        self.status = "pending"
        self.submitted = submitted
        self.completed: int | None = None
        self.polls = 0
        self.finished_ops = 0
        self.errored_ops = 0
        self.results: list[dict] | None = None
        self.archive: bytes | None = None
        self.timer: threading.Timer | None = None
        self.lock = threading.Lock()


def _param_str(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return ",".join(_param_str(x) for x in v)
    return str(v)


def validate_operations(body) -> list[dict]:
    if not isinstance(body, dict) or "operations" not in body:
        raise P.missing_fields("operations")
    ops = body["operations"]
    if not isinstance(ops, list):
        raise P.field_error("operations", "Schema describes array")
    errors = []
    for i, op in enumerate(ops):
        where = f"operations.{i}"
        if not isinstance(op, dict):
            errors.append({"field": where, "message": "Schema describes object"})
            continue
        if op.get("method") not in _METHODS:
            errors.append({"field": where + ".method",
                           "message": "Value must be one of: " + ", ".join(_METHODS)})
        if not isinstance(op.get("path"), str) or not op["path"]:
            errors.append({"field": where + ".path", "message": "Required field: path"})
        if "body" in op and op["body"] is not None and not isinstance(op["body"], str):
            errors.append({"field": where + ".body",
                           "message": "Schema describes string, object found instead"})
        if "params" in op and op["params"] is not None and not isinstance(op["params"], dict):
            errors.append({"field": where + ".params", "message": "Schema describes object"})
    if errors:
        raise P.invalid_resource(errors)
    return ops


class BatchStore:
    def __init__(self, emu):
        self.emu = emu
        self._batches: dict[str, Batch] = {}
        self._lock = threading.Lock()

    def submit(self, body) -> Batch:
        ops = validate_operations(body)
        b = Batch(secrets.token_hex(5), ops, self.emu.now())
        with self._lock:
            self._batches[b.id] = b
        delay = self.emu.batch_finish_after
        if delay is not None:
            b.timer = threading.Timer(delay, self.finish, (b,))
            b.timer.daemon = True
            b.timer.start()
        return b

    def get(self, batch_id: str) -> Batch:
        b = self._batches.get(batch_id)
        if b is None:
            raise P.not_found()
        return b

    def poll(self, batch_id: str) -> Batch:
        """GET /batches/{id}: each poll moves the batch along."""
        b = self.get(batch_id)
        with b.lock:
            b.polls += 1
            if b.status == "pending":
                b.status = "started"
        need = self.emu.batch_polls_to_finish
        if need is not None and b.polls >= need:
            self.finish(b)
        return b

    def all(self) -> list[Batch]:
        with self._lock:
            return list(self._batches.values())

    def delete(self, batch_id: str) -> None:
        with self._lock:
            b = self._batches.pop(batch_id, None)
        if b is None:
            raise P.not_found()
        if b.timer:
            b.timer.cancel()

    def archive_bytes(self, batch_id: str) -> bytes | None:
        b = self._batches.get(batch_id)
        return None if b is None else b.archive

    def finish(self, b: Batch) -> None:
        """Run the operations (once) and build the results archive."""
        from civimc_sandbox.emulator.api import dispatch

        with b.lock:
            if b.status == "finished" or b.id not in self._batches:
                return
            b.status = "started"
            base = self.emu.base_url
            results = []
            for op in b.ops:
                path = op["path"]
                if path.startswith("/3.0/") or path == "/3.0":
                    path = path[4:] or "/"
                params = {k: _param_str(v) for k, v in (op.get("params") or {}).items()}
                resp = dispatch(self.emu, op["method"], path, params, op.get("body"), base)
                text = "" if resp.body is None else orjson.dumps(resp.body).decode()
                results.append({"status_code": resp.status,
                                "operation_id": op.get("operation_id"),
                                "response": text})
                b.finished_ops += 1
                if resp.status >= 400:
                    b.errored_ops += 1
            b.results = results
            b.archive = self._pack(b)
            b.completed = self.emu.now()
            b.status = "finished"
        if b.timer:
            b.timer.cancel()

    def _pack(self, b: Batch) -> bytes:
        items = list(b.results or [])
        if self.emu.batch_shuffle_results:
            random.Random(b.id).shuffle(items)
        per = max(1, int(self.emu.batch_results_per_file))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
            chunks = [items[i:i + per] for i in range(0, len(items), per)] or [[]]
            for i, chunk in enumerate(chunks):
                data = orjson.dumps(chunk)
                name = hashlib.md5(f"{b.id}:{i}".encode()).hexdigest()[:12] + ".json"
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = int(time.time())
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    def render(self, b: Batch, base: str) -> dict:
        origin = base[: -len("/3.0")] if base.endswith("/3.0") else base
        url = f"{origin}{RESULTS_PREFIX}{b.id}.tar.gz" if b.status == "finished" else ""
        return {
            "id": b.id,
            "status": b.status,
            "total_operations": len(b.ops),
            "finished_operations": b.finished_ops,
            "errored_operations": b.errored_ops,
            "submitted_at": iso(b.submitted),
            "completed_at": iso(b.completed),
            "response_body_url": url,
            "_links": [
                {"rel": "parent", "href": f"{base}/batches", "method": "GET"},
                {"rel": "self", "href": f"{base}/batches/{b.id}", "method": "GET"},
                {"rel": "delete", "href": f"{base}/batches/{b.id}", "method": "DELETE"},
            ],
        }
