"""xl's command table (tools/xl/xl_cmdtable.c) for what the stand-in does, and main()."""

from __future__ import annotations

from collections.abc import Callable

import xlstate
from xlstandin import control, create, info, vif
from xlstandin.common import Exit, say
from xswire import XsError

COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "create": create.cmd_create,
    "unpause": control.cmd_unpause,
    "pause": control.cmd_pause,
    "destroy": control.cmd_destroy,
    "shutdown": control.cmd_shutdown,
    "reboot": control.cmd_reboot,
    "sysrq": control.cmd_sysrq,
    "domid": info.cmd_domid,
    "list": info.cmd_list,
    "info": info.cmd_info,
    "pci-assignable-list": info.cmd_pci_assignable_list,
    "network-attach": vif.cmd_network_attach,
    "network-detach": vif.cmd_network_detach,
    "network-list": vif.cmd_network_list,
}


def main(argv: list[str]) -> int:
    directory = xlstate.standin_dir()
    xlstate.record_call(directory, argv)
    args = argv[1:]
    while args and args[0].startswith("-"):  # xl's global options (-v, -f, -N, -t, -T)
        args = args[1:]
    if not args or args[0] not in COMMANDS:
        print("Usage xl [-vfNtT] <subcommand> [args]\n\nxl full list of subcommands:\n")
        for name in COMMANDS:
            print(f" {name:<19} ")
        return 1
    try:
        return COMMANDS[args[0]](args[1:])
    except Exit as done:
        return done.code
    except (OSError, XsError) as err:  # e.g. xenstored went away mid-command
        say(f"xl (stand-in): xenstore failed: {err!r}")
        return 1
