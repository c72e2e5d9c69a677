"""The report's HTML exporter (report/audit.py html_exporter) makes the same page as nbconvert's
HTMLExporter: its finishing touches (tabindex on cell areas, alternative text on images) are
made without BeautifulSoup, and the result must parse to nbconvert's own document."""

from __future__ import annotations

import nbformat
import pytest
from bs4 import BeautifulSoup
from nbconvert import HTMLExporter

from civimc_audit.report.audit import focusable_page, html_exporter

OPTIONS = {"exclude_input": True, "exclude_input_prompt": True, "exclude_output_prompt": True}


def _notebooks():
    v4 = nbformat.v4
    html = ('<p>Ann &amp; Bob</p><img src="a.png"><img alt="chart" src="b.png">'
            '<div class="jp-OutputArea-output">inner</div>'
            "<script>var s = '<img src=c.png>' + '<div class=\"jp-OutputArea-output\">';</script>"
            "<style>.x::after { content: '<img src=d.png>'; }</style>")
    yield v4.new_notebook(cells=[
        v4.new_markdown_cell("# Title\n\nSome *text* ![pic](e.png) and <img src='f.png'>."),
        v4.new_code_cell("display(HTML(...))", outputs=[
            v4.new_output("display_data", {"text/html": html, "text/plain": "<HTML>"}),
            v4.new_output("display_data", {"text/markdown": "- one\n- two"}),
            v4.new_output("stream", name="stdout", text="printed\n")]),
        v4.new_markdown_cell("The end."),
    ])
    yield v4.new_notebook()


@pytest.mark.parametrize("nb", list(_notebooks()))
def test_the_page_parses_to_nbconvert_s_own(nb):
    stock, _ = HTMLExporter(**OPTIONS).from_notebook_node(nb)
    page, _ = html_exporter().from_notebook_node(nb)
    assert str(BeautifulSoup(page, features="html.parser")) == stock


def test_script_and_style_text_is_left_alone():
    page = ('<div class="jp-Cell-inputWrapper"><img src="x.png"></div>'
            "<script>'<img src=y>'; '<div class=\"jp-OutputArea-output\">'</script>"
            "<STYLE>/* <img src=z> */</STYLE>")
    assert focusable_page(page) == (
        '<div class="jp-Cell-inputWrapper" tabindex="0">'
        '<img alt="No description has been provided for this image" src="x.png"></div>'
        "<script>'<img src=y>'; '<div class=\"jp-OutputArea-output\">'</script>"
        "<STYLE>/* <img src=z> */</STYLE>")
