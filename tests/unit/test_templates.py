"""The templates stay within a strict Content-Security-Policy: no inline script or style."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TEMPLATES = sorted((Path(__file__).parents[2] / "myapp" / "templates").glob("*.jinja2"))
FORBIDDEN = {
    "a <script> element": re.compile(r"<script\b", re.IGNORECASE),
    "a <style> element": re.compile(r"<style\b", re.IGNORECASE),
    "a style attribute": re.compile(r"\sstyle\s*=", re.IGNORECASE),
    "an event handler attribute": re.compile(r"\son[a-z]+\s*=", re.IGNORECASE),
    "a javascript: URL": re.compile(r"javascript:", re.IGNORECASE),
}


def test_there_are_templates_to_check():
    assert len(TEMPLATES) >= 6


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: path.name)
def test_a_template_has_no_inline_script_or_style(template):
    text = template.read_text()
    found = [what for what, pattern in FORBIDDEN.items() if pattern.search(text)]
    assert found == [], f"{template.name} has {', '.join(found)}"
