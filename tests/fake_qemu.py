#!/usr/bin/env python3
"""A fake qemu-system-* for lifecycle tests.

It takes QEMU's argv as the harness builds it, connects to the QMP socket
and answers a minimal QMP, replays a console log recorded from a real boot
(FAKE_QEMU_CONSOLE), and in "boot" mode serves SSH on the forwarded port
(paramiko), accepting only the key found in the per-run initrd overlay.

"Guest" commands never reach a host shell: a tiny interpreter knows the few
commands the harness and its tests send (true, exit N, echo TEXT, cat FILE,
dmesg, an upload's ``cat > F && chmod M F``, poweroff, sysrq) and keeps the
guest's files in memory, so nothing is left on the host when the fake dies,
however it dies.

Saving and restoring (QMP ``stop``, ``migrate`` to ``exec:cat > FILE``;
``-incoming defer``, ``migrate-incoming`` from ``exec:cat FILE``, ``cont``)
keep what a real migration stream would: the guest's host key and files,
as JSON in FILE. A restored fake prints nothing on its console.

FAKE_QEMU_MODE: boot | panic-at-boot | hang | silent | silent-once | die | port-busy | save-fails
FAKE_QEMU_PIDFILE: write our pid here (so tests can check we are gone).
"""
import io
import json
import os
import shlex
import socket
import sys
import threading
import time
import zlib

import paramiko

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from harness.image import cpio  # noqa: E402
from harness.vm import stuck  # noqa: E402

PANIC_LINES = [
    "[   12.345678] sysrq: SysRq : Trigger a crash",
    "[   12.345900] Kernel panic - not syncing: sysrq triggered crash",
    "[   12.346000] CPU: 0 PID: 101 Comm: sh Not tainted 5.0.0 #1",
    "[   12.346100] Kernel Offset: disabled",
]


def arg_after(argv, flag):
    for i, word in enumerate(argv):
        if word == flag and i + 1 < len(argv):
            return argv[i + 1]
    return None


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def overlay_key(initrd_path):
    """The authorized key from the uncompressed archive after the gzip one."""
    data = open(initrd_path, "rb").read()
    decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
    decomp.decompress(data)
    rest = decomp.unused_data.lstrip(b"\0")
    for entry in cpio.read(rest):
        if entry.path.endswith("authorized_keys"):
            return entry.data.decode().split()[1]
    return None


class Server(paramiko.ServerInterface):
    def __init__(self, key_b64, frozen=lambda: False):
        self.key_b64 = key_b64
        self.command = None
        self.event = threading.Event()
        #: The guest's sshd no longer answers anything (after 'freeze'): a
        #: request blocks the whole SSH transport, as a stuck sshd would.
        self.frozen = frozen

    def check_auth_publickey(self, username, key):
        if username == "root" and key.get_base64() == self.key_b64:
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def get_allowed_auths(self, username):
        return "publickey"

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel, command):
        while self.frozen():
            time.sleep(0.1)
        self.command = command.decode()
        self.event.set()
        return True


class Fake:
    def __init__(self, argv):
        self.argv = argv
        chardev = next(a for a in argv if a.startswith("socket,id=qmp,"))
        self.qmp_path = chardev.split("path=", 1)[1].split(",", 1)[0]
        netdev = next(a for a in argv if "hostfwd=" in a)
        self.port = int(netdev.split("hostfwd=tcp:127.0.0.1:", 1)[1].split("-", 1)[0])
        self.initrd = arg_after(argv, "-initrd")
        self.mode = os.environ.get("FAKE_QEMU_MODE", "boot")
        self.balloon = 2 << 30
        self.host_key_pem = _host_key_pem()
        self.host_key = paramiko.Ed25519Key.from_private_key(io.StringIO(self.host_key_pem))
        self.incoming = arg_after(argv, "-incoming")
        self.migration = "none"
        self.resumed = threading.Event()
        self.files = {}  # the guest's files: path -> bytes, in memory only
        self.alive = True
        self.hung = False
        self.frozen = False

    def listen_qmp(self):
        """Like -chardev socket,server=on,wait=off: listen before anything else."""
        self.qmp_listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.qmp_listener.bind(self.qmp_path)
        self.qmp_listener.listen(1)

    def qmp(self):
        sock, _ = self.qmp_listener.accept()
        f = sock.makefile("rwb", buffering=0)

        def send(obj):
            f.write(json.dumps(obj).encode() + b"\r\n")

        send({"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": "fake"}, "capabilities": []}})
        for msg in _messages(sock):
            name, args, ident = msg.get("execute"), msg.get("arguments", {}), msg.get("id")
            reply = {"return": {}}
            if name == "query-status":
                reply = {"return": {"status": "running", "running": True}}
            elif name == "balloon":
                self.balloon = args["value"]
            elif name == "query-balloon":
                reply = {"return": {"actual": self.balloon}}
            elif name == "stop":
                pass
            elif name == "migrate":
                path = shlex.split(args["uri"].split(":", 1)[1])[-1]  # exec:cat > PATH
                if self.mode == "save-fails":
                    self.migration = "failed"
                else:
                    with open(path, "w") as state:
                        json.dump({"host_key_pem": self.host_key_pem,
                                   "files": {k: v.decode("latin-1") for k, v in self.files.items()}}, state)
                    self.migration = "completed"
            elif name == "migrate-incoming":
                path = shlex.split(args["uri"].split(":", 1)[1])[-1]  # exec:cat PATH
                with open(path) as state:
                    saved = json.load(state)
                self.host_key_pem = saved["host_key_pem"]
                self.host_key = paramiko.Ed25519Key.from_private_key(io.StringIO(self.host_key_pem))
                self.files = {k: v.encode("latin-1") for k, v in saved["files"].items()}
                self.migration = "completed"
            elif name == "query-migrate":
                reply = {"return": {"status": self.migration}}
                if self.migration == "failed":
                    reply["return"]["error-desc"] = "fake: the stream could not be written"
            elif name == "cont":
                self.resumed.set()
            elif name == "quit":
                if ident is not None:
                    reply["id"] = ident
                send(reply)
                os._exit(0)
            elif name not in ("qmp_capabilities",):
                reply = {"error": {"class": "CommandNotFound", "desc": f"The command {name} has not been found"}}
            if ident is not None:
                reply["id"] = ident
            send(reply)

    def replay(self, path, until=None):
        with open(path, errors="replace") as log:
            for line in log:
                line = line.rstrip("\n")
                if line.startswith("### harness"):
                    continue
                if "HARNESS-HOSTKEY" in line:
                    line = f"HARNESS-HOSTKEY {self.host_key.get_name()} {self.host_key.get_base64()}"
                if until and until in line:
                    return
                out(line)
                time.sleep(0.0005)

    def ssh_server(self, key_b64):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(8)
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=self.session, args=(conn, key_b64), daemon=True).start()

    def session(self, conn, key_b64):
        transport = paramiko.Transport(conn)
        transport.add_server_key(self.host_key)
        server = Server(key_b64, frozen=lambda: self.frozen)
        try:
            transport.start_server(server=server)
        except paramiko.SSHException:
            return
        while transport.is_active():
            channel = transport.accept(1)
            if channel is None:
                continue
            server.event.wait(5)
            threading.Thread(target=self.execute, args=(channel, server.command), daemon=True).start()
            server.event.clear()

    def execute(self, channel, command):
        if self.hung:  # a hung kernel: sshd accepted the channel, nothing runs
            time.sleep(3600)
        if "sysrq-trigger" in command:
            for line in PANIC_LINES:
                out(line)
            time.sleep(0.05)
            os._exit(0)
        if "poweroff" in command:
            channel.send_exit_status(0)
            channel.close()
            time.sleep(0.05)
            os._exit(0)
        stdin = b""
        while not channel.eof_received:
            if channel.recv_ready():
                stdin += channel.recv(65536)
            else:
                time.sleep(0.005)
        while channel.recv_ready():
            stdin += channel.recv(65536)
        if command == stuck.PROBE:  # the harness asks what the tasks are doing
            status, stdout, stderr = 0, self.proc_samples(), b""
        else:
            status, stdout, stderr = self.interpret(command, stdin)
        channel.sendall(stdout)
        channel.sendall_stderr(stderr)
        channel.send_exit_status(status)
        channel.close()

    def proc_samples(self):
        """The probe's answer as this fake's /proc would give it: sshd
        asleep, and a wedged command's task asleep in D state, never run."""
        def stat(tid, comm, state):
            return f"{tid} ({comm}) {state} 1 1 1 0 -1 4194560 0 0 0 0 2 3 0 0 20 0 1 0 50 0"
        tasks = [(90, "sshd", "S")] + ([(101, "wedge", "D")] if getattr(self, "wedged", False) else [])
        lines = ["S 200"]
        for tag, up in (("A", "30.00"), ("B", "32.00")):
            lines.append(f"{tag} uptime {up} 50.00")
            lines += [f"{tag} {stat(*task)}" for task in tasks]
            lines += [f"{tag}s {tid} 1000 10 7" for tid, _, _ in tasks]
        for tid, comm, _ in tasks:
            lines += [f"W {tid} {'folio_wait_bit_common' if comm == 'wedge' else 'do_select'}", f"C {tid} {comm}"]
        if getattr(self, "wedged", False):
            lines.append("K 101 [<0>] folio_wait_bit_common+0x1a4/0x2f0")
        return ("\n".join(lines) + "\n").encode()

    def interpret(self, command, stdin):
        """(status, stdout, stderr) of one guest command line: ``&&``-joined
        simple commands, no host shell involved."""
        try:
            words = shlex.split(command)
        except ValueError as exc:
            return 2, b"", f"fake guest: cannot parse {command!r}: {exc}\n".encode()
        stdout = b""
        while words:
            simple = words[:words.index("&&")] if "&&" in words else words
            words = words[len(simple) + 1:]
            status, out_, err = self.simple(simple, stdin)
            stdout += out_
            if status:
                return status, stdout, err
        return 0, stdout, b""

    def simple(self, argv, stdin):
        name, args = (argv[0], argv[1:]) if argv else ("true", [])
        if name == "true":
            return 0, b"", b""
        if name == "exit":
            return int(args[0]) if args else 0, b"", b""
        if name == "echo":
            return 0, (" ".join(args) + "\n").encode(), b""
        if name == "sleep" and len(args) == 1:  # slow, but the guest still answers
            time.sleep(float(args[0]))
            return 0, b"", b""
        if name == "freeze":  # sshd stops answering requests: a new channel's exec never gets a reply
            self.frozen = True
            self.hung = True
            time.sleep(3600)
        if name == "wedge":  # the kernel holds the command's task (D state); the guest answers others
            self.wedged = True
            time.sleep(3600)
        if name == "hang":  # the kernel stops scheduling anything: nothing answers any more
            self.hung = True
            time.sleep(3600)
        if name == "date":
            return 0, b"", b""
        if name == "seed" and args == ["--reseed", "-"]:  # the restored guest's entropy
            self.files["/dev/urandom"] = stdin
            return 0, b"", b""
        if name == "dmesg":
            return 0, b"[    0.000000] Linux version 5.0.0 (fake guest)\n", b""
        if len(args) >= 2 and args[-2] == ">" and name != "cat":  # COMMAND ... > FILE
            status, out_, err = self.simple([name, *args[:-2]], stdin)
            self.files[args[-1]] = out_
            return status, b"", err
        if name == "cat" and len(args) == 2 and args[0] == ">":
            self.files[args[1]] = stdin
            return 0, b"", b""
        if name == "cat" and len(args) == 1:
            if args[0] not in self.files:
                return 1, b"", f"cat: {args[0]}: No such file or directory\n".encode()
            return 0, self.files[args[0]], b""
        if name == "chmod" and len(args) == 2:
            return (0, b"", b"") if args[1] in self.files else (1, b"", f"chmod: {args[1]}: no such file\n".encode())
        return 127, b"", f"fake guest: {name}: command not found\n".encode()

    def main(self):
        pidfile = os.environ.get("FAKE_QEMU_PIDFILE")
        if pidfile:
            with open(pidfile, "w") as f:
                f.write(str(os.getpid()))
        console = os.environ.get("FAKE_QEMU_CONSOLE")
        if self.mode != "die":
            self.listen_qmp()
        if self.mode == "die":
            sys.stderr.write("qemu-system-x86_64: -kernel: could not load kernel\r\n")
            sys.exit(1)
        if self.mode == "port-busy":
            state = os.environ["FAKE_QEMU_STATE"]
            if not os.path.exists(state):
                open(state, "w").close()
                threading.Thread(target=self.qmp, daemon=True).start()
                time.sleep(0.2)
                out(f"qemu-system-x86_64: -netdev user,id=net0,hostfwd=tcp:127.0.0.1:{self.port}-:22: Could not set up host forwarding rule 'tcp:127.0.0.1:{self.port}-:22'")
                sys.exit(1)
            self.mode = "boot"
        threading.Thread(target=self.qmp, daemon=True).start()
        if self.mode == "silent-once":
            state = os.environ["FAKE_QEMU_STATE"]
            if not os.path.exists(state):
                open(state, "w").close()
                time.sleep(3600)
            self.mode = "boot"
        if self.mode == "silent":
            time.sleep(3600)
        if self.mode == "hang":
            self.replay(console, until="Run /init")
            time.sleep(3600)
        if self.mode == "panic-at-boot":
            self.replay(console, until="Run /init")
            for line in PANIC_LINES:
                out(line)
            sys.exit(0)
        key_b64 = overlay_key(self.initrd)
        if self.incoming:
            self.resumed.wait()  # the saved guest's host key and files are in
            threading.Thread(target=self.ssh_server, args=(key_b64,), daemon=True).start()
            while True:
                time.sleep(3600)
        threading.Thread(target=self.ssh_server, args=(key_b64,), daemon=True).start()
        time.sleep(0.1)
        self.replay(console)
        while True:
            time.sleep(3600)


def _messages(sock):
    """QMP clients need not end a message with a newline: parse a stream."""
    decoder = json.JSONDecoder()
    buf = ""
    while True:
        data = sock.recv(65536)
        if not data:
            return
        buf += data.decode()
        while True:
            buf = buf.lstrip()
            if not buf:
                break
            try:
                msg, end = decoder.raw_decode(buf)
            except ValueError:
                break
            buf = buf[end:]
            yield msg


def _host_key_pem():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()


if __name__ == "__main__":
    Fake(sys.argv[1:]).main()
