"""harness boot and shell: one guest by hand."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from harness.commands.options import (
    add_source_options,
    add_vm_options,
    boot_inputs,
    machine_request,
)
from harness.errors import ExitCode, UserError
from harness.host import proc
from harness.host.rundir import new_run_dir, write_json
from harness.vm.machine import Machine
from harness.vm.ssh import Ssh, load_key


def _cmd_boot(args: argparse.Namespace) -> int:
    kernel, initrd = boot_inputs(args)
    run_dir = new_run_dir("boot", args.arch, args.runs)
    request = machine_request(args, kernel, initrd)
    with Machine(request, run_dir, echo=proc.stderr_echo(args.quiet)) as machine:
        info = machine.connection_info()
        write_json(run_dir / "ssh.json", info)
        boot = machine.times.as_dict()
        print(f"guest {args.arch} up: ssh ready {boot['ssh_s']}s after QEMU start ({machine.accel.accel}: {machine.accel.reason})")
        print(f"  run directory: {run_dir}")
        print(f"  shell:         harness shell {run_dir}")
        print(f"  ssh:           {proc.quote(machine.ssh_command())}")
        if args.command:
            result = machine.run(args.command, timeout=args.timeout)
            sys.stdout.write(result.stdout)
            sys.stderr.write(result.stderr)
            return result.status
        if args.exit:
            return ExitCode.PASS
        print("  Ctrl-C shuts the guest down.")
        sys.stdout.flush()
        while machine.child is not None and machine.child.isalive():
            time.sleep(0.5)
            fatal = machine.watcher.fatal() if machine.watcher else None
            if fatal:
                print(f"kernel {fatal.kind.value}: {fatal.line}", file=sys.stderr)
                return ExitCode.KERNEL
    return ExitCode.PASS


def _add_boot(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("boot", help="boot a guest and print how to reach it")
    add_source_options(parser)
    add_vm_options(parser)
    parser.add_argument("--command", help="run this command in the guest, print its output, shut down")
    parser.add_argument("--timeout", type=float, default=300.0, help="timeout for --command")
    parser.add_argument("--exit", action="store_true", help="shut down as soon as SSH works")
    parser.set_defaults(handler=_cmd_boot)


def _cmd_shell(args: argparse.Namespace) -> int:
    info_path = Path(args.run_dir) / "ssh.json"
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError):
        raise UserError(f"{info_path} is missing: is {args.run_dir} the directory of a running 'harness boot'?") from None
    ssh = Ssh(info["port"], load_key(Path(info["key"])), info.get("host_key"))
    ssh.connect(10)
    try:
        if args.command:
            result = ssh.run(" ".join(args.command))
            sys.stdout.write(result.stdout)
            sys.stderr.write(result.stderr)
            return result.status
        return ssh.interactive()
    finally:
        ssh.close()


def _add_shell(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("shell", help="an SSH shell (or one command) in a guest started by 'harness boot'")
    parser.add_argument("run_dir", type=Path, help="the run directory 'harness boot' printed")
    parser.add_argument("command", nargs="*", help="a command to run instead of an interactive shell")
    parser.set_defaults(handler=_cmd_shell)


ADDERS = [_add_boot, _add_shell]
