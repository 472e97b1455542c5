"""The Chromium runner survives a crashed renderer, and does not hide a test that crashes it."""

from __future__ import annotations

import pytest

from . import runner

pytestmark = pytest.mark.timeout(300)

# Three quick tests, run in this order.
FIRST = "tests/test_storage_contract.py::test_add_then_get_keeps_every_field[memory]"
SECOND = "tests/test_storage_contract.py::test_add_then_get_keeps_every_field[indexeddb]"
THIRD = "tests/test_storage_contract.py::test_get_unknown_id_is_none[indexeddb]"
ARGS = [FIRST, SECOND, THIRD]


def test_a_crash_mid_run_resumes_with_the_tests_not_yet_finished() -> None:
    results = runner.run_chromium(ARGS, 240, crash_at=[SECOND])
    assert results.renderer_crashes == [SECOND]
    assert results.with_outcome("passed") == sorted([FIRST, SECOND, THIRD])
    assert results.exit_code == 0
    assert f"crashed during {SECOND}" in results.summary()


def test_a_test_running_at_two_crashes_fails_the_run() -> None:
    with pytest.raises(RuntimeError, match=r"crashed 2 times, the last while .*indexeddb"):
        runner.run_chromium(ARGS, 240, crash_at=[SECOND, SECOND])
