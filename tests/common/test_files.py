"""write_atomic: readers see the old file or the new one, never a part, and nothing is left
behind."""

from __future__ import annotations

import os
import stat

import pytest

from civimc_audit.common import files
from civimc_audit.common.files import write_atomic


def test_text_and_bytes_replace_the_file(tmp_path):
    target = tmp_path / "summary.json"
    write_atomic(target, "first\n")
    assert target.read_text(encoding="utf-8") == "first\n"
    write_atomic(target, "zweite — ü\n")
    assert target.read_bytes() == "zweite — ü\n".encode()
    write_atomic(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_new_files_are_owner_only_whatever_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_atomic(tmp_path / "a.txt", "x")
        made = files.private_dir(tmp_path / "new" / "deeper")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o600
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700


def test_private_dir_leaves_an_existing_folder_as_it_was(tmp_path):
    os.chmod(tmp_path, 0o755)
    files.private_dir(tmp_path)
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "index.html"
    target.write_text("old")

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["index.html"]


def test_the_data_is_synced_before_the_rename(tmp_path, monkeypatch):
    events = []
    monkeypatch.setattr(files.os, "fsync", lambda fd: events.append("fsync"))
    real_replace = os.replace
    monkeypatch.setattr(files.os, "replace",
                        lambda a, b: (events.append("replace"), real_replace(a, b)))
    write_atomic(tmp_path / "x", "y")
    assert events == ["fsync", "replace"]
