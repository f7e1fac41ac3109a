"""The one way a test may skip (a missing Chromium or PostgreSQL), and that
under BITMAIL_REQUIRE_ALL=1, as .ci/run sets, no test skips at all."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTS = Path(__file__).resolve().parent

SKIPPING = '''
import pytest
from support.harness import Part, skip_without

import os
from support.harness import require_all

# Each skipping test fails should its skip not stop it, and the one that runs
# checks what the harness read: none of them passes by doing nothing.

def test_needs_chromium():
    skip_without(Part.CHROMIUM, "not installed here")
    pytest.fail("skip_without returned")

@pytest.mark.skip(reason="a mark")
def test_marked():
    pytest.fail("the skip mark did not stop this test")

def test_library_skip():
    pytest.skip("some library gave up")
    pytest.fail("pytest.skip returned")

def test_runs():
    assert require_all() is (os.environ.get("BITMAIL_REQUIRE_ALL") == "1")
'''


def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
        require_all: str | None, source: str = SKIPPING) -> pytest.RunResult:
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    if require_all is None:
        monkeypatch.delenv("BITMAIL_REQUIRE_ALL", raising=False)
    else:
        monkeypatch.setenv("BITMAIL_REQUIRE_ALL", require_all)
    pytester.makepyfile(test_inner=source)
    return pytester.runpytest_subprocess("-p", "support.harness", "-rs", "-p",
                                         "no:cacheprovider")


@pytest.mark.parametrize("value", [None, "", "0"])
def test_a_missing_part_skips_with_its_reason_outside_ci(pytester, monkeypatch, value):
    result = run(pytester, monkeypatch, value)
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines(["*Chromium is missing: not installed here*"])


def test_under_require_all_every_skip_fails_whatever_raised_it(pytester, monkeypatch):
    result = run(pytester, monkeypatch, "1")
    # A mark skips in setup: its failure is reported as an error.
    result.assert_outcomes(passed=1, failed=2, errors=1)
    result.stdout.fnmatch_lines([
        "*BITMAIL_REQUIRE_ALL=1, so this test may not skip: Chromium is missing*"])


def test_under_require_all_a_module_skipped_whole_fails(pytester, monkeypatch):
    result = run(pytester, monkeypatch, "1", "import pytest\n"
                 "pytest.skip('no part', allow_module_level=True)\n"
                 "def test_never():\n    pytest.fail('the module was not skipped')\n")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*BITMAIL_REQUIRE_ALL=1, so this test may not skip*"])


@pytest.mark.parametrize("value", ["true", "yes", "2"])
def test_a_require_all_value_that_is_not_1_or_0_stops_the_run(pytester, monkeypatch,
                                                                    value):
    result = run(pytester, monkeypatch, value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*BITMAIL_REQUIRE_ALL must be 1*not '{value}'*"])
