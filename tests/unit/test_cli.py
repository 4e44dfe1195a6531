"""The command line: options work in any position or are refused with exit 2 and one line.

Regressions from issue 10: `orchestrate --dry-run boot` ran a REAL boot and `--units X
check` checked ./units (a subcommand's defaults reset options given before it), and a
`status` after `--root R` read the host's /run.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.cli import COMMAND_LINE, OPTIONS
from orchestrator.state import BootState
from tests.conftest import EXAMPLE_UNITS, normalise_console, run_orchestrate
from tests.unit.unit_docs import Units

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))


def parse(*argv: str) -> tuple[str, dict[str, object]]:
    command, args = COMMAND_LINE.parse(list(argv))
    return command.name, vars(args)


def refused(*argv: str) -> str:
    """The one line a usage error prints (exit 2)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exited:
        COMMAND_LINE.parse(list(argv))
    assert exited.value.code == 2
    lines = err.getvalue().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# (argv, command, the values it must carry), each option before and after the command
SAME_IN_ANY_POSITION = [
    (["--dry-run", "boot"], "boot", {"dry_run": True}),
    (["boot", "--dry-run"], "boot", {"dry_run": True}),
    (["--dry-run"], "boot", {"dry_run": True}),
    ([], "boot", {"dry_run": False, "skip_preflight": False, "root": "/", "units": None,
                  "log_format": "console", "debug": False}),
    (["--skip-preflight", "boot"], "boot", {"skip_preflight": True}),
    (["--units", "X", "check"], "check", {"units": "X"}),
    (["check", "--units", "X"], "check", {"units": "X"}),
    (["--units=X", "plan"], "plan", {"units": "X"}),
    (["--units", "A", "check", "--units", "B"], "check", {"units": "B"}),
    (["--root", "/tmp", "status"], "status", {"root": "/tmp"}),
    (["status", "--root", "/tmp"], "status", {"root": "/tmp"}),
    (["--log-format", "json", "--debug", "watch"], "watch",
     {"log_format": "json", "debug": True, "dry_run": False}),
    (["--dry-run", "shutdown"], "shutdown", {"dry_run": True}),
    (["shutdown", "--dry-run"], "shutdown", {"dry_run": True}),
    (["--units", "U", "review", "cap.log"], "review", {"units": "U", "capture": "cap.log"}),
    (["review", "cap.log", "--units", "U"], "review", {"units": "U", "capture": "cap.log"}),
    (["review", "--", "--odd-name.log"], "review", {"capture": "--odd-name.log"}),
    (["--", "review", "x.log"], "review", {"capture": "x.log"}),
    (["--units", "check"], "boot", {"units": "check"}),
    (["--json", "status", "--check"], "status", {"json": True, "check": True}),
    (["--boot", "2", "review", "-", "--svg", "chart.svg", "--json"], "review",
     {"boot": 2, "capture": "-", "svg": "chart.svg", "json": True}),
    (["review", "x.log"], "review", {"boot": None, "svg": None, "json": False}),
]


@pytest.mark.parametrize(("argv", "command", "values"), SAME_IN_ANY_POSITION,
                         ids=[" ".join(a) or "(none)" for a, _, _ in SAME_IN_ANY_POSITION])
def test_an_option_means_the_same_before_or_after_the_command(
        argv: list[str], command: str, values: dict[str, object]) -> None:
    name, args = parse(*argv)
    assert name == command and args["command"] == command
    assert {k: args[k] for k in values} == values
    assert {o.dest for o in OPTIONS} <= set(args), "every option has a value"


REFUSED = [
    (["--dry-run", "check"],
     "orchestrate check: --dry-run does not apply to check (only to boot, shutdown) "
     "(see orchestrate check --help)"),
    (["check", "--dry-run"],
     "orchestrate check: --dry-run does not apply to check (only to boot, shutdown) "
     "(see orchestrate check --help)"),
    (["--dry-run", "watch"],
     "orchestrate watch: --dry-run does not apply to watch (only to boot, shutdown) "
     "(see orchestrate watch --help)"),
    (["plan", "--skip-preflight"],
     "orchestrate plan: --skip-preflight does not apply to plan (only to boot) "
     "(see orchestrate plan --help)"),
    (["chek"], "orchestrate: invalid command 'chek' (choose from boot, check, plan, status, "
     "review, watch, shutdown) (see orchestrate --help)"),
    (["--units", "u", "x.log", "review"], "orchestrate: invalid command 'x.log' (choose "
     "from boot, check, plan, status, review, watch, shutdown) (see orchestrate --help)"),
    (["--dry"], "orchestrate: unrecognized arguments: --dry (see orchestrate --help)"),
    (["review"], "orchestrate review: the following arguments are required: capture "
     "(see orchestrate review --help)"),
    (["boot", "now"],
     "orchestrate boot: unrecognized arguments: now (see orchestrate boot --help)"),
    (["--log-format", "xml"], "orchestrate: argument --log-format: invalid choice: 'xml' "
     "(choose from 'console', 'json') (see orchestrate --help)"),
    (["--root", "/nonexistent/root", "check"], "orchestrate check: argument --root: "
     "'/nonexistent/root' is not a directory (see orchestrate check --help)"),
    (["check", "--units", ""], "orchestrate check: argument --units: must not be empty "
     "(see orchestrate check --help)"),
    (["status", "--units"], "orchestrate status: argument --units: expected one argument "
     "(see orchestrate status --help)"),
    (["review", "x.log", "--boot", "-1"], "orchestrate review: argument --boot: '-1' is "
     "not a number 0..999999999 (see orchestrate review --help)"),
    (["--json", "check"], "orchestrate check: --json does not apply to check (only to "
     "status, review) (see orchestrate check --help)"),
    (["\x1b[2J\n"], "orchestrate: invalid command '\\x1b[2J\\n' (choose from boot, check, "
     "plan, status, review, watch, shutdown) (see orchestrate --help)"),
    (["boot", "\x1b]0;pwned\x07"], "orchestrate boot: unrecognized arguments: "
     "\\x1b]0;pwned\\x07 (see orchestrate boot --help)"),
]


@pytest.mark.parametrize(("argv", "line"), REFUSED, ids=[repr(a) for a, _ in REFUSED])
def test_a_usage_error_exits_2_with_one_printable_line(argv: list[str], line: str) -> None:
    assert refused(*argv) == line


def test_help_and_version_exit_0_anywhere() -> None:
    for argv in (["--help"], ["check", "--help"], ["--version"], ["status", "--version"]):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
            COMMAND_LINE.parse(argv)
        assert exited.value.code == 0 and out.getvalue()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        COMMAND_LINE.parse(["check", "--help"])
    assert "--dry-run" not in out.getvalue(), "a command's help shows only its options"


# --- the real program -----------------------------------------------------------------


def test_dry_run_before_boot_is_a_dry_run_like_the_other_spellings(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outputs = []
    for argv in (["--dry-run", "boot"], ["boot", "--dry-run"], ["--dry-run"]):
        result = run_orchestrate(*argv, "--units", str(EXAMPLE_UNITS), "--root", str(root))
        assert result.returncode == 0, result.stderr
        assert "would " in result.stderr
        outputs.append(normalise_console(result.stderr, root))
    assert outputs[0] == outputs[1] == outputs[2]
    assert list(root.iterdir()) == [], "a dry run touched the root"


def test_units_given_before_check_is_the_directory_checked(tmp_path: Path) -> None:
    units = Units.example()
    units.domains["sa-vm"]["memory"] = 1
    path = units.write(tmp_path / "units")
    result = run_orchestrate("--units", str(path), "check")
    assert result.returncode == 2
    assert result.stdout.splitlines()[0] == \
        f"{path}/domains/sa-vm.toml: memory: 1 is out of range 32..1048576 MiB"


@pytest.mark.parametrize("before", [True, False], ids=["root first", "command first"])
def test_status_reads_the_state_file_under_root_wherever_root_is_given(
        tmp_path: Path, before: bool) -> None:
    root = tmp_path / "root"
    state = root / "run/orchestrator/state.json"
    state.parent.mkdir(parents=True)
    state.write_text(BootState(verdict="orchestrate: OK: a boot in the temp root",
                               exit_code=0).to_json())
    options = ["--root", str(root), "--units", str(EXAMPLE_UNITS)]
    argv = [*options, "status"] if before else ["status", *options]
    result = run_orchestrate(*argv)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verdict: orchestrate: OK: a boot in the temp root" in result.stdout


# --- fuzz -------------------------------------------------------------------------------

TOKENS = ["boot", "check", "plan", "status", "review", "watch", "shutdown", "--units",
          "--root", "--log-format", "--debug", "--dry-run", "--skip-preflight", "--help",
          "--check", "--json", "--svg", "--boot", "1", "-1", "x.svg",
          "--version", "-h", "--", "-", "json", "console", "/", "/tmp", "units", "x.log",
          "--units=", "--root=/", "--log-format=json", "--dry", "-x", ""]


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(TOKENS), st.text(max_size=12)), max_size=8))
def test_any_argv_parses_or_exits_0_or_2_with_a_message(argv: list[str]) -> None:
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            command, args = COMMAND_LINE.parse(argv)
    except SystemExit as exited:
        assert exited.code in (0, 2)
        if exited.code == 2:
            lines = err.getvalue().splitlines()
            assert len(lines) == 1 and lines[0].startswith("orchestrate")
            assert lines[0].isascii() and lines[0].isprintable()
        else:
            assert out.getvalue()
        return
    assert args.command == command.name
    assert {o.dest for o in OPTIONS} <= set(vars(args))
