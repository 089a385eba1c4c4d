"""QMP through qemu.qmp's synchronous wrapper, with every exchange kept as
JSON lines in the run directory (the raw capture fixtures come from)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Optional

from qemu.qmp import QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

from harness.errors import InfraError


class Qmp:
    def __init__(self, socket_path: Path, log_path: Optional[Path] = None) -> None:
        self.socket_path = socket_path
        self.log_path = log_path
        self._proto: Optional[QEMUMonitorProtocol] = None
        self._open = False

    def connect(self, timeout: float, alive: Callable[[], bool] = lambda: True) -> None:
        """Connect to QEMU's QMP server socket (-chardev ...,server=on,wait=off),
        retrying until it appears; give up at once if QEMU is gone."""
        deadline = time.monotonic() + timeout
        last: Optional[BaseException] = None
        while time.monotonic() < deadline:
            if not alive():
                raise InfraError("QEMU exited before its QMP socket was ready")
            if self.socket_path.exists():
                proto = QEMUMonitorProtocol(str(self.socket_path))
                try:
                    greeting = proto.connect(negotiate=True)
                except (QMPError, OSError) as exc:
                    last = exc
                    proto.close()
                else:
                    self._proto = proto
                    self._open = True
                    self._record("greeting", greeting)
                    return
            time.sleep(0.005)
        raise InfraError(f"no QMP connection at {self.socket_path} within {timeout:.0f}s: {last}")

    def command(self, name: str, **args: Any) -> Any:
        if not self._open:
            raise InfraError(f"QMP is not connected (command {name})")
        self._record("command", {"execute": name, "arguments": args} if args else {"execute": name})
        assert self._proto is not None
        try:
            reply = self._proto.cmd_raw(name, args or None)
        except (QMPError, OSError, EOFError) as exc:
            raise InfraError(f"QMP command {name} failed: {exc}") from exc
        self._record("reply", reply)
        if "error" in reply:
            raise InfraError(f"QMP command {name} returned an error: {reply['error'].get('desc', reply['error'])}")
        return reply.get("return")

    def events(self) -> list[dict]:
        if not self._open or self._proto is None:
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

    def throttle_disk_writes(self, device: str, bytes_per_second: int) -> None:
        """Throttle a drive's writes (0: no limit), e.g. to keep pages under
        writeback while a scenario looks at them.  ``device`` is the
        drive's -drive id (its block backend's name)."""
        self.command("block_set_io_throttle", device=device, bps=0, bps_rd=0, bps_wr=bytes_per_second, iops=0, iops_rd=0, iops_wr=0)

    def close(self) -> None:
        self._open = False
        if self._proto is None:
            return
        try:
            self._proto.close()
        except Exception:  # closing a dead socket must never mask the real error
            pass
        self._proto = None

    def _record(self, kind: str, message: Any) -> None:
        if not self.log_path:
            return
        with open(self.log_path, "a") as log:
            log.write(json.dumps({"t": round(time.time(), 3), kind: message}) + "\n")
