"""data/runs/index.html from the run folders: rendered from the package's jinja2 template with
autoescape, so nothing a summary.json says can become markup."""

from __future__ import annotations

import json

from civimc_audit.runs.index import build_index


def _run(runs, name, summary, files=("audit.html",)):
    folder = runs / name
    folder.mkdir(parents=True)
    for f in files:
        (folder / f).write_text("x")
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_markup_in_a_run_message_is_escaped(tmp_path):
    runs = tmp_path / "runs"
    _run(runs, "20260301T023000Z", {"status": "<b>ok</b>",
                                    "message": "failed for <script>alert('x')</script> & co"})
    page = build_index(runs).read_text(encoding="utf-8")
    assert "<script>" not in page and "<b>ok</b>" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co" in page
    assert "&lt;b&gt;ok&lt;/b&gt;" in page


def test_rows_link_what_exists_newest_first(tmp_path):
    runs = tmp_path / "runs"
    _run(runs, "20260301T023000Z", {"status": "ok", "message": "first",
                                    "outcomes": {"no_change": 5, "cannot_sync": 2,
                                                 "unsubscribe_in_mailchimp": 1},
                                    "apply_folder": "apply-plan1-20260301T023112Z"},
         files=("audit.html", "audit.ipynb"))
    (runs / "apply-plan1-20260301T023112Z").mkdir()
    (runs / "apply-plan1-20260301T023112Z" / "journal.csv").write_text("")
    _run(runs, "20260302T023000Z", {"status": "failed", "message": "second"}, files=())
    page = build_index(runs).read_text(encoding="utf-8")
    assert page.index("<td>second</td>") < page.index("<td>first</td>")
    assert ('<tr><td>20260301T023000Z</td><td style="color:#2e7d32;font-weight:bold">ok</td>'
            '<td>first</td><td>1</td><td>2</td><td>8</td><td>'
            '<a href="20260301T023000Z/audit.html">report</a> '
            '<a href="20260301T023000Z/audit.ipynb">notebook</a> '
            '<a href="20260301T023000Z/summary.json">summary.json</a> '
            '<a href="apply-plan1-20260301T023112Z/journal.csv">applied (journal)</a>'
            '</td></tr>') in page
    assert ('<tr><td>20260302T023000Z</td><td style="color:#c62828;font-weight:bold">failed'
            '</td><td>second</td><td></td><td></td><td></td><td>'
            '<a href="20260302T023000Z/summary.json">summary.json</a></td></tr>') in page
    assert '<img alt="outcome counts per run" src="data:image/png;base64,' in page
    assert [p.name for p in runs.iterdir() if p.is_file()] == ["index.html"]


def test_an_empty_runs_folder_says_so(tmp_path):
    page = build_index(tmp_path / "runs").read_text(encoding="utf-8")
    assert '<tr><td colspan="7">No runs yet.</td></tr>' in page
    assert "<p>No run has counts yet.</p>" in page and page.endswith("</body></html>\n")
