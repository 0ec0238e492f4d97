"""Error texts of the contract: timeouts and failures say what happened, in plain words."""

from __future__ import annotations

import pytest

from metatwin_functions import ExecutionFailedError, ExecutionTimeoutError


@pytest.mark.parametrize(
    ("timeout", "text"),
    [
        (1, "Function 'f' execution timed out after 1 second"),
        (1.0, "Function 'f' execution timed out after 1 second"),
        (0.5, "Function 'f' execution timed out after 0.5 seconds"),
        (2, "Function 'f' execution timed out after 2 seconds"),
        (30, "Function 'f' execution timed out after 30 seconds"),
    ],
)
def test_timeout_text_uses_the_singular_for_one_second(timeout: float, text: str) -> None:
    assert str(ExecutionTimeoutError("f", timeout)) == text


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (SystemExit(3), "Function execution failed: SystemExit(3)"),
        (SystemExit("bye"), "Function execution failed: SystemExit('bye')"),
        (SystemExit(), "Function execution failed: SystemExit"),
        (KeyboardInterrupt("stop"), "Function execution failed: KeyboardInterrupt('stop')"),
    ],
)
def test_failure_text_names_a_system_exit_or_interrupt(error: BaseException, text: str) -> None:
    assert str(ExecutionFailedError("f", error)) == text


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (ValueError("Cannot divide by zero!"), "Function execution failed: Cannot divide by zero!"),
        (KeyError(), "Function execution failed: KeyError"),
    ],
)
def test_failure_text_of_an_exception_is_its_message_or_type(error: Exception, text: str) -> None:
    assert str(ExecutionFailedError("f", error)) == text
