"""SSH to the guest with paramiko: a key made for the run, the host key
pinned to the one the guest announced on its console, commands with exit
status on their own channel, uploads through stdin."""
from __future__ import annotations

import io
import logging
import os
import select
import socket
import sys
import termios
import threading
import time
import tty
from pathlib import Path
from shlex import quote
from typing import Callable, Optional

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness.errors import InfraError
from harness.vm.command import CommandResult, CommandTimeout

# paramiko's transport thread logs what the harness already handles (a
# connection reset while dropbear starts, which the connect loop retries)
# at ERROR; with no handler anywhere, Python's last-resort handler would
# print it on the user's terminal between progress lines
logging.getLogger("paramiko").addHandler(logging.NullHandler())


def new_key() -> tuple[paramiko.PKey, str, bytes]:
    """A fresh Ed25519 key: (paramiko key, public line, OpenSSH private PEM)."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    key = paramiko.Ed25519Key.from_private_key(io.StringIO(pem.decode()))
    return key, f"{key.get_name()} {key.get_base64()} harness", pem


def load_key(path: Path) -> paramiko.PKey:
    return paramiko.Ed25519Key.from_private_key_file(str(path))


class _PinnedHostKey(paramiko.MissingHostKeyPolicy):
    """Accept exactly the host key the guest announced on its console; with
    no announcement, accept nothing (there is no accept-any fallback)."""

    def __init__(self, announced: Optional[str]) -> None:
        self.announced = announced

    def missing_host_key(self, client, hostname, key):
        if self.announced is None:
            raise paramiko.SSHException("the guest announced no host key: refusing to trust the one it offers")
        offered = f"{key.get_name()} {key.get_base64()}"
        if offered != self.announced:
            raise paramiko.SSHException(f"host key {offered[:40]}... is not the one the guest announced")


class Ssh:
    def __init__(self, port: int, key: paramiko.PKey, host_key: Optional[str], host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.key = key
        self.host_key = host_key
        self.client: Optional[paramiko.SSHClient] = None

    def connect(self, timeout: float, alive: Callable[[], bool] = lambda: True) -> float:
        """Connect, retrying until ``timeout``; returns the seconds it took."""
        start = time.monotonic()
        deadline = start + timeout
        last: Optional[Exception] = None
        while time.monotonic() < deadline and alive():
            client = paramiko.SSHClient()
            client.set_missing_host_key_policy(_PinnedHostKey(self.host_key))
            try:
                client.connect(
                    self.host, self.port, username="root", pkey=self.key, timeout=5, banner_timeout=10,
                    auth_timeout=10, allow_agent=False, look_for_keys=False,
                )
                self.client = client
                return time.monotonic() - start
            except (paramiko.SSHException, OSError, EOFError) as exc:
                last = exc
                client.close()
                time.sleep(0.1)
        raise InfraError(f"no SSH connection to 127.0.0.1:{self.port} within {timeout:.0f}s: {last}")

    def run(
        self,
        command: str,
        timeout: float = 120.0,
        stdin: Optional[bytes] = None,
        abort: Callable[[], Optional[str]] = lambda: None,
    ) -> CommandResult:
        """Run a command; ``abort()`` is polled and, when it returns a reason
        (e.g. the kernel panicked), the wait ends with an InfraError."""
        if self.client is None:
            raise InfraError("SSH is not connected")
        start = time.monotonic()
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise InfraError(f"the SSH connection is gone (running {command!r})")
        deadline = start + timeout
        channel = self._open(transport, command, timeout, deadline, abort)
        if stdin is not None:
            channel.sendall(stdin)
        channel.shutdown_write()
        out, err = bytearray(), bytearray()
        while True:
            while channel.recv_ready():
                out += channel.recv(65536)
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(65536)
            if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                break
            reason = abort()
            if reason:
                channel.close()
                raise InfraError(f"command {command!r} interrupted: {reason}")
            if time.monotonic() > deadline:
                channel.close()
                raise CommandTimeout(f"command {command!r} did not finish within {timeout:.0f}s",
                                     stdout=out.decode("utf-8", "replace"), stderr=err.decode("utf-8", "replace"))
            if not transport.is_active():
                raise InfraError(f"the SSH connection dropped while running {command!r}")
            # wakes as soon as the exit status arrives: a plain 10 ms sleep
            # made every command wait 5 ms past its end on average
            channel.status_event.wait(0.01)
        status = channel.recv_exit_status() if channel.status_event.is_set() else -1
        if status == -1:
            # closed without an exit status (paramiko's -1): the connection, the
            # guest's sshd or QEMU died under the command
            channel.close()
            reason = abort()
            raise InfraError(f"the SSH channel closed without an exit status while running {command!r}" + (f": {reason}" if reason else ""))
        channel.close()
        return CommandResult(command, status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), time.monotonic() - start)

    @staticmethod
    def _open(transport: paramiko.Transport, command: str, timeout: float, deadline: float,
              abort: Callable[[], Optional[str]]) -> paramiko.Channel:
        """A session channel running ``command``.  paramiko waits for the
        server's answers to the channel open and to the exec request without
        end: a guest that stops answering there would hang the harness, so
        they are asked in a thread while this one keeps to the deadline and
        polls ``abort``."""

        opened: dict = {}

        def ask() -> None:
            try:
                channel = transport.open_session(timeout=max(1.0, deadline - time.monotonic()))
                channel.exec_command(command)
                opened["channel"] = channel
            except Exception as exc:  # handed to the waiting thread
                opened["error"] = exc

        asker = threading.Thread(target=ask, name="ssh-open", daemon=True)
        asker.start()
        while asker.is_alive():
            asker.join(0.02)
            if not asker.is_alive():
                break
            reason = abort()
            if reason:
                raise InfraError(f"command {command!r} interrupted: {reason}")
            if time.monotonic() > deadline:
                raise CommandTimeout(f"command {command!r} did not finish within {timeout:.0f}s (the guest never opened its channel)")
        if "error" in opened:
            raise InfraError(f"could not start {command!r} over SSH: {opened['error']}")
        return opened["channel"]

    def upload(self, data: bytes, remote: str, mode: str = "0755") -> None:

        result = self.run(f"cat > {quote(remote)} && chmod {mode} {quote(remote)}", stdin=data)
        if not result.ok:
            raise InfraError(f"upload to {remote} failed: {result.stderr.strip()}")

    def interactive(self) -> int:
        """An interactive shell on this terminal (for `harness shell`)."""
        if self.client is None:
            raise InfraError("SSH is not connected")

        size = os.get_terminal_size() if sys.stdin.isatty() else os.terminal_size((80, 24))
        channel = self.client.invoke_shell(term=os.environ.get("TERM", "vt100"), width=size.columns, height=size.lines)
        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd) if sys.stdin.isatty() else None
        try:
            if saved is not None:
                tty.setraw(fd)
            while True:
                readable, _, _ = select.select([channel, sys.stdin], [], [])
                if channel in readable:
                    data = channel.recv(4096)
                    if not data:
                        break
                    os.write(sys.stdout.fileno(), data)
                if sys.stdin in readable:
                    data = os.read(fd, 1024)
                    if not data:
                        break
                    channel.send(data)
        finally:
            if saved is not None:
                termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        return channel.recv_exit_status() if channel.exit_status_ready() else 0

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


def free_port() -> int:
    """A port on 127.0.0.1 free right now (QEMU may still lose a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
