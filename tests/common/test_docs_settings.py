"""Every ``CT_*`` name the documentation mentions is a real setting (issue 15, item 9)."""

from __future__ import annotations

import re
from pathlib import Path

from ct.settings import all_settings

ROOT = Path(__file__).resolve().parents[2]
# Variables of the test suite, the benchmarks and ctctl, not of the servers.
NOT_SETTINGS = re.compile(r"CT_TEST_[A-Z_]+|CT_TURN_BENCH_PROFILE|CT_API_TOKEN")


def documents() -> list[Path]:
    return sorted([ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("bench/*/README.md"),
                   *ROOT.glob("packaging/**/*.env")])


def test_every_documented_variable_is_a_setting():
    known = {s.env for s in all_settings()}
    unknown = {}
    for path in documents():
        names = set(re.findall(r"\bCT_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(encoding="utf-8")))
        bad = sorted(n for n in names if n not in known and not NOT_SETTINGS.fullmatch(n))
        if bad:
            unknown[path.relative_to(ROOT).as_posix()] = bad
    assert unknown == {}


def test_the_check_reads_the_documents():
    assert ROOT / "docs" / "metrics.md" in documents()
    assert "CT_METRICS_STATSD_PREFIX" in (ROOT / "docs" / "metrics.md").read_text()
