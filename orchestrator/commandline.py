"""A command line from two tables, commands and options, parsed the same in any order.

argparse's subparsers apply their own defaults over what was given before the
subcommand: `orchestrate --dry-run boot` ran a REAL boot, `--units X check` checked
./units. Here every parser knows every option, none has a default (argparse.SUPPRESS),
so the namespace holds exactly what was typed, wherever it was typed; an option given
to a command it does not apply to is refused; the defaults are filled in last. A usage
error is one line and exit 2. Pure: nothing here runs a command.

Adding a command is one `Command(...)` entry; adding an option is one `Option(...)` entry
and its flag in the `options` of the commands it applies to.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, NoReturn

from orchestrator.errors import EXIT_INVALID

# A usage error echoes argv: keep it one line of printable ASCII, however hostile argv is.
MAX_MESSAGE = 300

# NamedTuples, not frozen dataclasses: every run of orchestrate builds these, and a frozen
# dataclass costs ~0.5 ms to define (its methods are generated with exec); start-up is
# boot time.


class Option(NamedTuple):
    flag: str  # "--dry-run"
    help: str
    metavar: str | None = None  # None: a flag, True when given; else it takes a value
    default: Any = None  # when absent; a flag is False when absent
    choices: tuple[str, ...] | None = None
    # converts and checks a value; raise argparse.ArgumentTypeError with the reason
    convert: Callable[[str], Any] | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def absent(self) -> Any:
        return False if self.metavar is None else self.default


class Argument(NamedTuple):
    """A positional argument of one command."""

    name: str
    help: str


class Command(NamedTuple):
    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    options: tuple[str, ...] = ()  # flags from the option table, beyond the global ones
    arguments: tuple[Argument, ...] = ()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INVALID, f"{self.prog}: {one_line(message)} "
                  f"(see {self.prog} --help)\n")


def one_line(text: str) -> str:
    shown = "".join(c if c.isascii() and c.isprintable() else ascii(c)[1:-1] for c in text)
    return shown if len(shown) <= MAX_MESSAGE else shown[: MAX_MESSAGE - 3] + "..."


class CommandLine(NamedTuple):
    prog: str
    description: str
    epilog: str
    version: str
    commands: tuple[Command, ...]
    options: tuple[Option, ...]
    global_options: tuple[str, ...]  # flags every command takes
    default_command: str  # what runs when no command is named

    def command(self, name: str) -> Command:
        return next(c for c in self.commands if c.name == name)

    def parse(self, argv: Sequence[str] | None) -> tuple[Command, argparse.Namespace]:
        """The command and a namespace with every option's dest (given or default) and
        `command` set to its name; SystemExit(2) with one line on a usage error, (0)
        after --help or --version."""
        parser = self._parser()
        args = parser.parse_args(argv)
        command = self.command(getattr(args, "command", None) or self.default_command)
        allowed = set(self.global_options) | set(command.options)
        for option in self.options:
            if hasattr(args, option.dest) and option.flag not in allowed:
                takers = [c.name for c in self.commands if option.flag in c.options]
                parser.error(f"{option.flag} does not apply to {command.name} (only to "
                             f"{', '.join(takers) or 'no command'})")
            if not hasattr(args, option.dest):
                setattr(args, option.dest, option.absent)
        args.command = command.name
        return command, args

    def _parser(self) -> argparse.ArgumentParser:
        default = self.command(self.default_command)
        parser = _Parser(prog=self.prog, description=self.description, epilog=self.epilog,
                         allow_abbrev=False, argument_default=argparse.SUPPRESS)
        self._add_options(parser, default)
        sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
        for command in self.commands:
            child = sub.add_parser(command.name, help=command.help, description=command.help,
                                   allow_abbrev=False, argument_default=argparse.SUPPRESS)
            self._add_options(child, command)
            for argument in command.arguments:
                child.add_argument(argument.name, help=argument.help)
        return parser

    def _add_options(self, parser: argparse.ArgumentParser, command: Command) -> None:
        """Every option, so that none is "unrecognized" in any position; the help of a
        parser shows only those its command takes."""
        parser.add_argument("--version", action="version", version=self.version)
        shown = set(self.global_options) | set(command.options)
        for option in self.options:
            text = option.help if option.flag in shown else argparse.SUPPRESS
            if option.metavar is None:
                parser.add_argument(option.flag, action="store_true", help=text)
            else:
                parser.add_argument(option.flag, metavar=option.metavar, help=text,
                                    choices=option.choices, type=option.convert or str)
