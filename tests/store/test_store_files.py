"""The store's files are owner-only when the library is used directly (a notebook kernel, a
script), not only through the CLI: DuckDB's write-ahead log holds the same personal data."""

import os
import stat
import subprocess
import sys
import textwrap


def test_a_store_opened_by_the_library_keeps_its_log_owner_only(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)  # an operator's folder, readable by others: it stays so
    script = textwrap.dedent(f"""
        import os, stat, sys
        os.umask(0o022)
        from civimc_audit.store import Store
        store = Store({str(folder / "audit.duckdb")!r})
        store.con.execute("CREATE TABLE t AS SELECT 'ann@example.org' AS email")
        wal = {str(folder / "audit.duckdb.wal")!r}
        print(oct(stat.S_IMODE(os.stat(wal).st_mode)) if os.path.exists(wal) else "no wal")
        sys.stdout.flush()
        os._exit(0)  # as a kill would: the log stays behind
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0o600"
    assert stat.S_IMODE((folder / "audit.duckdb").stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
