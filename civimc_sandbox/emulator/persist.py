"""The emulator's audiences on disk, so a restarted emulator keeps what clients wrote.

``save_state(emu, path)`` writes every audience (its settings, members of every status with all
their stored fields, forgotten addresses, tag ids, last (un)subscribe dates) as one JSON file,
atomically (a temporary file renamed over the old one). ``load_state(emu, path)`` reads it back
into an emulator that has none of those audiences yet. ``Autosave`` keeps the file current from a
background thread: it saves when any audience's change counter moved (checked every
``interval`` seconds) and once more on ``stop()``.

Not kept: recorded requests, fault settings and /batches jobs (a restart forgets unfinished
batch operations, as if their results had expired). Persistence is off unless asked for
(``--state FILE``), so tests and benchmarks pay nothing for it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import orjson

from civimc_sandbox.emulator.records import Record
from civimc_sandbox.emulator.state import Emulator, ListState

FORMAT = 1
_RECORD_FIELDS = Record.__slots__


def state_bytes(emu: Emulator) -> bytes:
    """The emulator's audiences as JSON (taken under the emulator's lock, so consistent)."""
    with emu.lock:
        doc = {"format": FORMAT, "seq": emu._seq,
               "lists": [_list_doc(lst) for lst in emu.lists.values()]}
        return orjson.dumps(doc)


def _list_doc(lst: ListState) -> dict:
    return {
        "id": lst.id, "name": lst.name, "created": lst.created, "web_id": lst.web_id,
        "fields": lst.fields, "merge_fields": lst.merge_fields, "tag_ids": lst.tag_ids,
        "last_sub": lst.last_sub, "last_unsub": lst.last_unsub,
        "tombstones": sorted(lst.tombstones),
        "interest_categories": lst.catalogue.to_doc(),
        "members": [[getattr(rec, f) for f in _RECORD_FIELDS] for rec in lst.order],
    }


def save_state(emu: Emulator, path: Path) -> None:
    """Write the state file atomically: a reader sees the old file or the new, never half."""
    data = state_bytes(emu)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def load_state(emu: Emulator, path: Path) -> int:
    """Restore the audiences saved at `path`; returns how many members were loaded.

    Raises ``ValueError`` for a file of another format or an audience the emulator already has.
    """
    doc = orjson.loads(Path(path).read_bytes())
    if doc.get("format") != FORMAT:
        raise ValueError(f"{path}: not an emulator state file of format {FORMAT}")
    loaded = 0
    with emu.lock:
        for d in doc["lists"]:
            if d["id"] in emu.lists:
                raise ValueError(f"{path}: audience {d['id']} is already in the emulator")
            lst = ListState(d["id"], d["name"], d["created"], d["web_id"], d["merge_fields"],
                            d["fields"])
            lst.tag_ids.update(d["tag_ids"])
            lst.last_sub, lst.last_unsub = d["last_sub"], d["last_unsub"]
            lst.tombstones.update(d["tombstones"])
            lst.catalogue.load_doc(d.get("interest_categories", []))
            for values in d["members"]:
                rec = Record.__new__(Record)
                rec.activity = None  # files saved before members had an activity feed
                for name, value in zip(_RECORD_FIELDS, values, strict=False):
                    setattr(rec, name, value)
                lst.insert(rec)
                if rec.id != rec.origin:
                    lst.moved[rec.origin] = rec
            lst.bulk_changed()
            emu.lists[lst.id] = lst
            loaded += len(d["members"])
        emu._seq = max(emu._seq, doc["seq"])
    return loaded


class Autosave:
    """Keeps a state file current while an emulator serves (a daemon thread)."""

    def __init__(self, emu: Emulator, path: Path, interval: float = 0.25):
        self.emu, self.path, self.interval = emu, Path(path), interval
        self._saved = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="emulator-autosave", daemon=True)

    def _mark(self) -> tuple:
        with self.emu.lock:
            return tuple((lst.id, lst.version) for lst in self.emu.lists.values())

    def save_if_changed(self) -> bool:
        mark = self._mark()
        if mark == self._saved:
            return False
        save_state(self.emu, self.path)
        self._saved = mark
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.save_if_changed()

    def start(self) -> Autosave:
        self.save_if_changed()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.save_if_changed()
