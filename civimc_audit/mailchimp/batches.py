"""Mailchimp's batch endpoint: many operations in a few calls, run by Mailchimp in its own time.

`POST /batches {"operations": [...]}` queues the operations (docs/mailchimp-api.md, batches);
`GET /batches/{id}` says how far they got (pending, started, ..., finished); a finished batch's
`response_body_url` is a gzipped tar of JSON files, each an array of
`{status_code, operation_id, response}` with `response` the operation's answer as a string (a
problem document for an error), in no particular order.

`run_operations` sends the operations in batches of `chunk` (all submitted first, then polled
together with a growing pause), so one failed batch loses only its own part; it returns each
answered operation's result by operation_id. Operations of a batch that did not finish within
`timeout` seconds, or that its archive does not mention, are returned as `missing`: the caller
decides what to do with them (activity.py reads those directly). A batch given up on is deleted
(best effort) so that Mailchimp does not run it for nothing. The requests (submits, polls,
archives) are counted in the client's stats like every other.
"""

from __future__ import annotations

import contextlib
import io
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from civimc_audit.common.progress import progress_bar
from civimc_audit.errors import EXIT_USAGE, MailchimpError
from civimc_audit.mailchimp.client import MailchimpClient

#: Operations per batch: a failed batch loses only this many; a few batches run side by side.
CHUNK = 50_000
#: Seconds to wait for all batches to finish before giving up on the unfinished ones.
TIMEOUT = 1800.0
#: Pauses between polling rounds: the first, the factor it grows by, the longest.
POLL_FIRST, POLL_GROWTH, POLL_CAP = 0.5, 1.5, 15.0
_POLL_FIELDS = "id,status,total_operations,finished_operations,errored_operations,response_body_url"


@dataclass(frozen=True)
class OpResult:
    """One operation's answer: its HTTP status and body (JSON text, "" when there is none)."""

    status_code: int
    response: str


@dataclass
class BatchRun:
    """What `run_operations` got: results by operation_id, the operation_ids left without one
    (their batch failed, did not finish in time or did not mention them), and why."""

    results: dict[str, OpResult]
    missing: list[str]
    problems: list[str]


def parse_archive(data: bytes) -> list[dict]:
    """Every `{status_code, operation_id, response}` of a results archive (all its .json files)."""
    items: list[dict] = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar:
            if not (member.isfile() and member.name.endswith(".json")):
                continue
            f = tar.extractfile(member)
            if f is None:
                continue
            part = orjson.loads(f.read())
            if isinstance(part, list):
                items.extend(x for x in part if isinstance(x, dict))
    return items


def _submit(client: MailchimpClient, ops: list[dict]) -> str:
    body = client.request("POST", "/batches", json={"operations": ops}) or {}
    batch_id = body.get("id")
    if not batch_id:
        raise MailchimpError("Mailchimp POST /batches: an answer without a batch id")
    return str(batch_id)


def _forget(client: MailchimpClient, batch_id: str) -> None:
    # best effort: an unfinished batch left behind costs Mailchimp, not us
    with contextlib.suppress(MailchimpError):
        client.request("DELETE", f"/batches/{batch_id}")


def _give_up(run: BatchRun, part: list[dict], why: str) -> None:
    run.problems.append(why)
    run.missing.extend(op["operation_id"] for op in part)


def _submit_all(client: MailchimpClient, ops: list[dict], chunk: int,
                run: BatchRun) -> dict[str, list[dict]]:
    """Every batch submitted (batch id -> its operations); a refused one is given up on."""
    pending: dict[str, list[dict]] = {}
    size = max(1, chunk)
    for start in range(0, len(ops), size):
        part = ops[start:start + size]
        try:
            pending[_submit(client, part)] = part
        except MailchimpError as exc:
            if exc.exit_code == EXIT_USAGE:
                raise
            _give_up(run, part, f"a batch of {len(part)} operations was refused: {exc}")
    return pending


def _poll_round(client: MailchimpClient, pending: dict[str, list[dict]], run: BatchRun,
                seen: dict[str, int], bar) -> None:
    """Each pending batch polled once; the finished ones collected and dropped from `pending`."""
    for batch_id in list(pending):
        try:
            b = client.get(f"/batches/{batch_id}", fields=_POLL_FIELDS)
        except MailchimpError as exc:
            if exc.exit_code == EXIT_USAGE:
                raise
            _give_up(run, pending.pop(batch_id), f"batch {batch_id} could not be polled: {exc}")
            continue
        now = int(b.get("finished_operations") or 0)
        if now > seen.get(batch_id, 0):
            bar.update(now - seen.get(batch_id, 0))
            seen[batch_id] = now
        if b.get("status") == "finished":
            _collect(client, batch_id, b, pending.pop(batch_id), run)


def run_operations(client: MailchimpClient, ops: list[dict], *, chunk: int = CHUNK,
                   timeout: float = TIMEOUT, progress: bool = False, desc: str = "batch",
                   sleep: Callable[[float], None] = time.sleep) -> BatchRun:
    """Run `ops` (each with a unique `operation_id`) through /batches; see the module text."""
    run = BatchRun({}, [], [])
    if not ops:
        return run
    pending = _submit_all(client, ops, chunk, run)
    deadline = time.monotonic() + timeout
    pause = POLL_FIRST
    seen: dict[str, int] = {}
    with progress_bar(progress, total=len(ops), desc=desc, unit="op") as bar:
        while pending:
            _poll_round(client, pending, run, seen, bar)
            if pending and time.monotonic() + pause > deadline:
                for batch_id, part in pending.items():
                    _give_up(run, part, f"batch {batch_id} did not finish within {timeout:.0f} s")
                    _forget(client, batch_id)
                break
            if pending:
                sleep(pause)
                pause = min(POLL_CAP, pause * POLL_GROWTH)
    for line in run.problems:
        sys.stderr.write(f"civimc-audit: {line}\n")
    return run


def _collect(client: MailchimpClient, batch_id: str, b: dict, part: list[dict],
             run: BatchRun) -> None:
    """A finished batch's results into `run` (its unanswered operations into run.missing)."""
    url = b.get("response_body_url") or ""
    items: list[dict] = []
    try:
        if not url:
            raise MailchimpError("finished without a results address")
        items = parse_archive(client.fetch_archive(url))
    except (MailchimpError, tarfile.TarError, orjson.JSONDecodeError, OSError, EOFError) as exc:
        run.problems.append(f"batch {batch_id}: results unreadable ({exc})")
    wanted = {op["operation_id"] for op in part}
    for item in items:
        oid = item.get("operation_id")
        if isinstance(oid, str) and oid in wanted and oid not in run.results:
            response = item.get("response")
            try:
                code = int(item.get("status_code"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                continue
            run.results[oid] = OpResult(code, response if isinstance(response, str) else "")
    run.missing.extend(op["operation_id"] for op in part
                       if op["operation_id"] not in run.results)
