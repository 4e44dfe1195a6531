"""A command line from two tables, commands and options, parsed the same in any order.

argparse's subparsers apply their own defaults over what was given before the
subcommand: `orchestrate --dry-run boot` ran a REAL boot, `--units X check` checked
./units. Here there are no subparsers: the command is found first (the first word that
is no option and no option's value), then one parser for it reads every other word. It
knows every option, none has a default (argparse.SUPPRESS), so the namespace holds
exactly what was typed, wherever it was typed; an option given to a command it does not
apply to is refused; the defaults are filled in last. A usage error is one line and
exit 2. Pure: nothing here runs a command.

Adding a command is one `Command(...)` entry; adding an option is one `Option(...)` entry
and its flag in the `options` of the commands it applies to.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from orchestrator.errors import EXIT_INVALID

# A usage error echoes argv: keep it one line of printable ASCII, however hostile argv is.
MAX_MESSAGE = 300

# Plain classes, not dataclasses or NamedTuples: every run of orchestrate defines these
# before it does anything, and a frozen dataclass costs ~0.5 ms to define (its methods
# are generated with exec), a NamedTuple ~0.1 ms; start-up is boot time.


class Option:
    """One option. `metavar` None: a flag, True when given; else it takes a value, which
    `convert` turns into what the command reads (raising argparse.ArgumentTypeError with
    the reason). `default` is its value when absent (a flag's is False)."""

    __slots__ = ("flag", "help", "metavar", "default", "choices", "convert")

    def __init__(self, flag: str, help: str, metavar: str | None = None, default: Any = None,
                 choices: tuple[str, ...] | None = None,
                 convert: Callable[[str], Any] | None = None) -> None:
        self.flag, self.help, self.metavar = flag, help, metavar
        self.default, self.choices, self.convert = default, choices, convert

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def absent(self) -> Any:
        return False if self.metavar is None else self.default


class Argument:
    """A positional argument of one command."""

    __slots__ = ("name", "help")

    def __init__(self, name: str, help: str) -> None:
        self.name, self.help = name, help


class Command:
    """A command: what runs it, the flags of the option table it takes beyond the global
    ones, and its positional arguments."""

    __slots__ = ("name", "help", "run", "options", "arguments")

    def __init__(self, name: str, help: str, run: Callable[[argparse.Namespace], int],
                 options: tuple[str, ...] = (), arguments: tuple[Argument, ...] = ()) -> None:
        self.name, self.help, self.run = name, help, run
        self.options, self.arguments = options, arguments


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INVALID, f"{self.prog}: {one_line(message)} "
                  f"(see {self.prog} --help)\n")


def one_line(text: str) -> str:
    shown = "".join(c if c.isascii() and c.isprintable() else ascii(c)[1:-1] for c in text)
    return shown if len(shown) <= MAX_MESSAGE else shown[: MAX_MESSAGE - 3] + "..."


class CommandLine:
    """The program's commands and options; `global_options` are the flags every command
    takes, `default_command` runs when none is named."""

    def __init__(self, prog: str, description: str, epilog: str, version: str,
                 commands: tuple[Command, ...], options: tuple[Option, ...],
                 global_options: tuple[str, ...], default_command: str) -> None:
        self.prog, self.description, self.epilog, self.version = (prog, description, epilog,
                                                                  version)
        self.commands, self.options = commands, options
        self.global_options, self.default_command = global_options, default_command

    def command(self, name: str) -> Command:
        return next(c for c in self.commands if c.name == name)

    def parse(self, argv: Sequence[str] | None) -> tuple[Command, argparse.Namespace]:
        """The command and a namespace with every option's dest (given or default) and
        `command` set to its name; SystemExit(2) with one line on a usage error, (0)
        after --help or --version."""
        words = list(sys.argv[1:] if argv is None else argv)
        at = self._command_at(words)
        named = at is not None and words[at] in {c.name for c in self.commands}
        command = self.command(words[at] if named and at is not None else self.default_command)
        parser = self._parser(command, named, helping="-h" in words or "--help" in words)
        if at is not None and not named:
            parser.error(f"invalid command {words[at]!r} (choose from "
                         f"{', '.join(c.name for c in self.commands)})")
        args = parser.parse_args(words[:at] + words[at + 1:] if at is not None else words)
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

    def _command_at(self, words: list[str]) -> int | None:
        """Where the command is: the first word that is neither an option nor an option's
        value (argparse's reading, for the options in the table; after `--`, the next)."""
        takes_value = {o.flag for o in self.options if o.metavar is not None}
        i = 0
        while i < len(words):
            word = words[i]
            if word == "--":
                return i + 1 if i + 1 < len(words) else None
            if word.startswith("-") and word != "-":
                i += 2 if word in takes_value else 1
                continue
            return i
        return None

    def _parser(self, command: Command, named: bool,
                helping: bool = False) -> argparse.ArgumentParser:
        """One parser for the one command (no subparsers: nothing resets what was typed
        before the command), knowing every option so that none is "unrecognized"; its
        help shows only the options the command takes."""
        prog, usage, description = f"{self.prog} {command.name}", None, command.help
        if not named:
            prog, usage = self.prog, f"{self.prog} [COMMAND] [options]"
            description = self.description
        if not named and helping:  # the list of commands, for --help only
            import textwrap

            width = max(len(c.name) for c in self.commands)
            rows = [textwrap.fill(c.help, 78, initial_indent=f"  {c.name:{width}}  ",
                                  subsequent_indent=" " * (width + 4))
                    for c in self.commands]
            description += (f"\n\ncommands (default {self.default_command}; "
                            f"`{self.prog} COMMAND --help` for its options):\n"
                            + "\n".join(rows))
        parser = _Parser(prog=prog, usage=usage, description=description, epilog=self.epilog,
                         allow_abbrev=False, argument_default=argparse.SUPPRESS,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--version", action="version", version=self.version)
        shown = set(self.global_options) | set(command.options)
        for option in self.options:
            text = option.help if option.flag in shown else argparse.SUPPRESS
            if option.metavar is None:
                parser.add_argument(option.flag, action="store_true", help=text)
            else:
                parser.add_argument(option.flag, metavar=option.metavar, help=text,
                                    choices=option.choices, type=option.convert or str)
        for argument in command.arguments:
            parser.add_argument(argument.name, help=argument.help)
        return parser
