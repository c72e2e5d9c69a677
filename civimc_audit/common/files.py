"""Files and folders the toolkit writes: owner-only, and replaced in one step.

Everything the toolkit writes holds supporters' personal data (names, addresses, consent), so
files are created readable by their owner only (0600) and folders 0700, whatever the umask.
Run folders are read while a run is writing them (the index, the next run, a person with the
page open), and a run can be killed at any moment; a file written in place could be caught
empty or cut short, so files are written beside and renamed into place.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path | str) -> Path:
    """Make `path` (and missing parents) a folder; the folders made here are 0700.

    An existing folder keeps its mode: it is the operator's, not ours.
    """
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    for made in missing:
        os.chmod(made, DIR_MODE)  # mkdir's mode is masked by the umask; chmod is not
    return path


def private_umask() -> None:
    """Make what this process creates from now on owner-only (and what its children create:
    the report's kernel inherits it). Files written by libraries we do not control (DuckDB's
    write-ahead log, which it recreates at will) can only be kept private this way."""
    os.umask(os.umask(0o077) | 0o077)


def make_private(path: Path | str) -> None:
    """Set an existing file to owner-only (0600), e.g. one a library wrote for us."""
    os.chmod(path, FILE_MODE)


def write_atomic(path: Path | str, data: str | bytes, *, encoding: str = "utf-8") -> Path:
    """Replace `path` with `data` (text is encoded with `encoding`) in one step.

    The data goes to a temporary file in the same folder (so the rename cannot cross file
    systems), made owner-only before anything is written to it, is flushed to disk, and is
    renamed over `path`. Returns `path`.
    """
    path = Path(path)
    body = data.encode(encoding) if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
