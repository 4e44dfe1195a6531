"""The errors that are safe to show to the person at the serial console.

Any exception that is not an OrchestratorError is a bug: the CLI prints a
traceback for it only with --debug (STYLE.md, "Errors").
"""

from __future__ import annotations

from dataclasses import dataclass

# Exit codes are an interface: OpenRC, the lab and people's scripts read them.
# Never change their meaning (cloud-init's lesson in STYLE.md).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130


class OrchestratorError(Exception):
    """A failure we understand: a message saying what failed and a hint saying what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class FetchError(OrchestratorError):
    """One download attempt failed; `retryable` says whether another may succeed; `hint`,
    when the cause is not the build server (a full image directory), says what to do."""

    def __init__(self, message: str, retryable: bool, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.retryable = retryable


@dataclass(frozen=True)
class UnitProblem:
    """One validation finding, printed as `file: key: problem`."""

    file: str
    key: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.problem}"


class InvalidUnits(OrchestratorError):
    """The unit files do not describe a system we can build; nothing was touched."""

    def __init__(self, problems: list[UnitProblem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.key, p.problem))
        count = len(self.problems)
        super().__init__(
            f"{count} problem{'s' if count != 1 else ''} in the unit files",
            hint="fix the keys named above; `orchestrate check` re-validates without touching "
            "anything",
        )


class CommandFailed(OrchestratorError):
    """An external program exited non-zero; carries what a person needs to debug it."""

    def __init__(
        self,
        argv: list[str],
        returncode: int,
        stderr: str,
        hint: str | None = None,
    ) -> None:
        tail = [line for line in stderr.strip().splitlines() if line.strip()][-3:]
        detail = f"; stderr: {' | '.join(tail)}" if tail else ""
        super().__init__(f"`{' '.join(argv)}` exited {returncode}{detail}", hint)
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr
