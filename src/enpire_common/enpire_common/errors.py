"""The ENPIRE error hierarchy.

Every error has a stable numeric ``code`` mirrored as constants in
``enpire_interfaces/msg/ErrorCode.msg`` (a test keeps both equal). Ranges: 100s config,
200s cell, 300s budget, 400s policy, 500s verification, 600s records. Core code raises these;
node callbacks translate them into ``error_code`` + ``error_msg`` result fields; clients turn a
result back into the matching exception with :func:`error_from_code`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

OK = 0


class EnpireError(Exception):
    """Base of every error ENPIRE raises on purpose. ``code`` is stable across releases."""

    code: int = 1
    name: str = 'UNKNOWN'

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, object]:
        """The error object of ``--json`` output and MCP tool errors."""
        return {'ok': False, 'error_code': self.code, 'error': self.name,
                'message': str(self)}


# --- 100s: configuration -----------------------------------------------------------------------
class ConfigError(EnpireError):
    """A config value, file or argument is invalid. The message names field, value and rule."""

    code, name = 100, 'CONFIG_INVALID'


class UnknownNameError(ConfigError):
    """A name (task, strategy, backend, view, ...) is not registered; suggests the closest."""

    code, name = 101, 'UNKNOWN_NAME'

    def __init__(self, kind: str, value: str, choices: Iterable[str]) -> None:
        choices = sorted(choices)
        close = difflib.get_close_matches(value, choices, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ''
        listing = ', '.join(choices) if choices else '(none registered)'
        super().__init__(f"unknown {kind} '{value}'{hint} (known: {listing})")
        self.kind, self.value, self.choices = kind, value, choices


class ContractMismatchError(ConfigError):
    """The task contract on disk differs from the locked one."""

    code, name = 102, 'CONTRACT_MISMATCH'


class LaunchError(ConfigError):
    """A launch file is invalid. ``str()`` is one line: ``file:line: problem``."""

    code, name = 103, 'LAUNCH_INVALID'

    def __init__(self, problem: str, file: str | None = None, line: int | None = None) -> None:
        where = ''
        if file:
            where = f'{file}:{line}: ' if line else f'{file}: '
        super().__init__(f'{where}{problem}')
        self.problem, self.file, self.line = problem, file, line


class UnconfinedError(ConfigError):
    """No filesystem/network confinement is available for policy code, and running without
    it was not allowed (``--allow-unconfined`` / ``sandbox.allow_unconfined``)."""

    code, name = 104, 'SANDBOX_UNCONFINED'


class AgentScopeError(ConfigError):
    """A coding agent asked for something outside its scope: a path outside its worktree,
    another cell, a spent trial budget, a verb that is not one of its tools."""

    code, name = 105, 'AGENT_SCOPE'


class VerifierUncalibratedError(ConfigError):
    """A verifier backend without a passing calibration was asked to judge trials."""

    code, name = 106, 'VERIFIER_UNCALIBRATED'


# --- 200s: cell ------------------------------------------------------------------------------
class CellError(EnpireError):
    """A cell (real or simulated) failed to do what was asked."""

    code, name = 200, 'CELL_ERROR'


class CellUnavailableError(CellError):
    """A cell's server or topic did not answer within its timeout."""

    code, name = 201, 'CELL_UNAVAILABLE'


class ResetFailedError(CellError):
    """The reset could not reach a verified start state within its attempts."""

    code, name = 202, 'RESET_FAILED'


class SafetyAbortError(CellError):
    """The safety layer aborted the trial."""

    code, name = 203, 'SAFETY_ABORT'


class CommandRejectedError(CellError):
    """A command was outside the safety envelope or malformed (NaN, wrong shape)."""

    code, name = 204, 'COMMAND_REJECTED'


class CellBusyError(CellError):
    """The cell is already running another goal."""

    code, name = 205, 'CELL_BUSY'


class CellPausedError(ResetFailedError):
    """The cell paused itself after consecutive failed resets; a person resumes it
    (``enpire cell resume``). Trials refused meanwhile end ``reset_failed``."""

    code, name = 206, 'CELL_PAUSED'


# --- 300s: budget ----------------------------------------------------------------------------
class BudgetExhaustedError(EnpireError):
    """A trial or experiment budget ran out."""

    code, name = 300, 'BUDGET_EXHAUSTED'


class EnpireTimeoutError(BudgetExhaustedError):
    """A bounded wait ran past its timeout."""

    code, name = 301, 'TIMEOUT'


class CancelledError(BudgetExhaustedError):
    """The work was cancelled by its caller."""

    code, name = 302, 'CANCELLED'


# --- 400s: policy ----------------------------------------------------------------------------
class PolicyError(EnpireError):
    """A policy misbehaved."""

    code, name = 400, 'POLICY_ERROR'


class PolicyRejectedError(PolicyError):
    """A policy revision failed validation; the message says what to fix."""

    code, name = 401, 'POLICY_REJECTED'


class PolicyFaultError(PolicyError):
    """A running policy crashed or produced an invalid action."""

    code, name = 402, 'POLICY_FAULT'


class PolicyDeadlineError(PolicyError):
    """A policy's ``act`` ran past the per-step deadline."""

    code, name = 403, 'POLICY_DEADLINE'


class SwitchFailedError(PolicyError):
    """A hot swap failed; the previous revision stays active."""

    code, name = 404, 'SWITCH_FAILED'


# --- 500s: verification ----------------------------------------------------------------------
class VerificationError(EnpireError):
    """The verifier could not reach a verdict."""

    code, name = 500, 'VERIFICATION_ERROR'


class BadImageError(VerificationError):
    """A camera image had the wrong encoding, size or was empty."""

    code, name = 501, 'BAD_IMAGE'


class ViewUnavailableError(VerificationError):
    """A requested camera view has no recent image."""

    code, name = 502, 'VIEW_UNAVAILABLE'


# --- 600s: records ---------------------------------------------------------------------------
class RecordError(EnpireError):
    """A trial record (bag, video, trial.json) could not be written or read."""

    code, name = 600, 'RECORD_ERROR'


class RecordDamagedError(RecordError):
    """A trial record on disk is damaged: cut short, overwritten, or not the expected format.

    The message names the file, what is wrong with it (offset, cause) and the way out
    (``enpire bag recover <trial>`` rebuilds a bag and the record from what is intact).
    """

    code, name = 601, 'RECORD_DAMAGED'


def _all_classes() -> list[type[EnpireError]]:
    out: list[type[EnpireError]] = []
    stack: list[type[EnpireError]] = [EnpireError]
    while stack:
        cls = stack.pop()
        out.append(cls)
        stack.extend(cls.__subclasses__())
    return out


#: name -> code of every error, e.g. ``ERROR_CODES['RESET_FAILED'] == 202``.
ERROR_CODES: dict[str, int] = {'OK': OK, **{c.name: c.code for c in _all_classes()}}
_BY_CODE: dict[int, type[EnpireError]] = {c.code: c for c in _all_classes()}


def error_from_code(code: int, message: str) -> EnpireError:
    """Build the exception matching a result's ``error_code`` (clients re-raise it)."""
    cls = _BY_CODE.get(int(code), EnpireError)
    err = EnpireError.__new__(cls)
    EnpireError.__init__(err, message)
    return err


def code_name(code: int) -> str:
    """The constant name of ``code`` (``'RESET_FAILED'`` for 202)."""
    cls = _BY_CODE.get(int(code))
    return 'OK' if code == OK else (cls.name if cls else f'UNKNOWN({code})')
