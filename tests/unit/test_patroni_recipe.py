"""The Patroni recipe printed in docs/operations.md is the configuration the tests run."""

from __future__ import annotations

import re

from tests.support.databases import REPO
from tests.support.patroni import recipe_text


def test_the_operators_guide_prints_the_patroni_configuration_the_tests_run():
    guide = (REPO / "docs" / "operations.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", guide, re.S)
    assert recipe_text() in blocks
