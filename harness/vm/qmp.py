"""QMP through qemu.qmp's synchronous wrapper, with every exchange kept as
JSON lines in the run directory (the raw capture fixtures come from)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

from qemu.qmp import QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

from harness.errors import InfraError


class Qmp:
    def __init__(self, socket_path: Path, log_path: Optional[Path] = None) -> None:
        self.socket_path = socket_path
        self.log_path = log_path
        # server=True: we listen; QEMU connects as a client (-chardev socket).
        self._proto = QEMUMonitorProtocol(str(socket_path), server=True)
        self._open = False

    def accept(self, timeout: float) -> None:
        try:
            greeting = self._proto.accept(timeout)
        except (QMPError, OSError, TimeoutError, Exception) as exc:  # qemu.qmp raises several kinds
            raise InfraError(f"QEMU did not connect to QMP at {self.socket_path} within {timeout:.0f}s: {exc}") from exc
        self._open = True
        self._record("greeting", greeting)

    def command(self, name: str, **args: Any) -> Any:
        if not self._open:
            raise InfraError(f"QMP is not connected (command {name})")
        self._record("command", {"execute": name, "arguments": args} if args else {"execute": name})
        try:
            reply = self._proto.cmd_raw(name, args or None)
        except (QMPError, OSError, EOFError) as exc:
            raise InfraError(f"QMP command {name} failed: {exc}") from exc
        self._record("reply", reply)
        if "error" in reply:
            raise InfraError(f"QMP command {name} returned an error: {reply['error'].get('desc', reply['error'])}")
        return reply.get("return")

    def events(self) -> list[dict]:
        if not self._open:
            return []
        try:
            events = self._proto.get_events(wait=False)
        except (QMPError, OSError):
            return []
        for event in events:
            self._record("event", event)
        return events

    def balloon(self, target_bytes: int) -> None:
        self.command("balloon", value=int(target_bytes))

    def balloon_actual(self) -> int:
        return int(self.command("query-balloon")["actual"])

    def wait_balloon(self, target_bytes: int, timeout: float, tolerance: int = 0) -> int:
        """Poll query-balloon until ``actual`` reaches the target."""
        deadline = time.monotonic() + timeout
        actual = self.balloon_actual()
        while abs(actual - target_bytes) > tolerance and time.monotonic() < deadline:
            time.sleep(0.2)
            actual = self.balloon_actual()
        return actual

    def close(self) -> None:
        if self._open:
            self._open = False
        try:
            self._proto.close()
        except Exception:  # closing a dead socket must never mask the real error
            pass

    def _record(self, kind: str, message: Any) -> None:
        if not self.log_path:
            return
        with open(self.log_path, "a") as log:
            log.write(json.dumps({"t": round(time.time(), 3), kind: message}) + "\n")
