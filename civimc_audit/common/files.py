"""Writing a file so readers see the old contents or the new, never half of either.

Run folders are read while a run is writing them (the index, the next run, a person with the
page open), and a run can be killed at any moment; a file written in place could be caught
empty or cut short.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def write_atomic(path: Path | str, data: str | bytes, *, encoding: str = "utf-8") -> Path:
    """Replace `path` with `data` (text is encoded with `encoding`) in one step.

    The data goes to a temporary file in the same folder (so the rename cannot cross file
    systems), is flushed to disk, and is renamed over `path`. New files get the mode the
    process's umask gives, as a plain `open()` would. Returns `path`.
    """
    path = Path(path)
    body = data.encode(encoding) if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
