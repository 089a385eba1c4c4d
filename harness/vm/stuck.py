"""Why a guest command outlived its timeout while the guest still answers:
the tasks the kernel holds.

A command that runs past its timeout in a guest that still answers SSH is
either slow (the host was loaded, the program is busy in user space) or
held by the kernel: a task asleep in D state (waiting in the kernel
without end) or spinning in a system call (a livelock, e.g. compaction
that never finishes because pages stay isolated).  The probe samples every
task's /proc stat, schedstat and wchan twice, two seconds apart, and the
judge tells the two apart from what a user task did: asleep in D state the
whole interval (never put on a CPU); at least half of it in system time
with not one tick of user time; or in D state at the first sample after
waiting through the command's whole time (almost no CPU time in its life):
the kernel's.  Anything else is the program's own.  Pure parsing, tested
on a real /proc and on a probe recorded when a mutant kernel held a task.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

#: What the probe prints: its own pid ("S", left out: its forks are system
#: time); "A"/"B" samples of every task's stat, each sample after the
#: guest's uptime; then the wchan, cmdline and kernel stack of every user
#: task (a non-empty cmdline: kernel threads have none).  The samples are
#: read by the shell itself: a fork per task would make them slow.
PROBE = (
    "echo \"S $$\"; sample() { read -r u < /proc/uptime; echo \"$1 uptime $u\"; "
    "for t in /proc/[0-9]*/task/[0-9]*; do "
    "read -r l < $t/stat && echo \"$1 $l\"; s=; read -r s < $t/schedstat && echo \"${1}s ${t##*/} $s\"; "
    "w=; read -r w < $t/wchan; echo \"${1}w ${t##*/} $w\"; "
    "done 2>/dev/null; }; "
    "sample A; sleep 2; sample B; "
    "for t in /proc/[0-9]*/task/[0-9]*; do c=; read -r c < $t/cmdline; [ -n \"$c\" ] || continue; "
    "i=${t##*/}; w=; read -r w < $t/wchan; echo \"W $i $w\"; "
    "echo \"C $i $(tr '\\0' ' ' < $t/cmdline | cut -c1-120)\"; "
    "sed \"s/^/K $i /\" $t/stack; "
    "done 2>/dev/null; true"
)

#: PF_KTHREAD in the flags of /proc/PID/stat: kernel threads are not
#: the command's tasks
PF_KTHREAD = 0x00200000

#: the probe's output, kept beside the console log
CAPTURE = "stuck-tasks.txt"

#: USER_HZ: /proc/PID/stat's times are in these ticks on every arch
TICKS = 100
#: the share of the interval in system time that, with no user time at
#: all, counts as spinning in one system call
KERNEL_SHARE = 0.5
#: a task that has been there for this share of the command's time (or
#: more), in D state when the time ran out and on a CPU for at most
#: WAITING_CPU_SHARE of its life, waited in the kernel all along
ALIVE_SHARE = 0.9
WAITING_CPU_SHARE = 0.02


@dataclass(frozen=True)
class Sample:
    state: str
    utime: int
    stime: int
    comm: str
    start: int  # starttime: tells a reused tid from the same task
    kthread: bool = False


@dataclass
class Task:
    tid: int
    comm: str
    state: str
    user_s: float
    system_s: float
    interval_s: float
    #: times it was put on a CPU in the interval (schedstat), None without it
    ran: Optional[int] = None
    cmdline: str = ""
    wchan: str = ""
    stack: list[str] = field(default_factory=list)
    #: at the first sample: its state and wchan, how long it had been
    #: there, and its CPU time (user and system) in that time
    state_before: str = ""
    wchan_before: str = ""
    age_s: float = 0.0
    cpu_s: float = 0.0
    #: how long the command had run when it was sampled (None: unknown)
    ran_for: Optional[float] = None

    @property
    def asleep(self) -> bool:
        """In one uninterruptible sleep the whole interval: D in both samples
        and never on a CPU between them (a task doing I/O is in D often,
        but wakes up)."""
        if self.state != "D":
            return False
        return self.ran == 0 if self.ran is not None else self.user_s + self.system_s == 0

    @property
    def spinning(self) -> bool:
        """In the kernel the whole interval: at least half of it in system
        time and not one tick in user space (a program making system calls
        in a loop, like yes(1), returns to user space and gets user ticks)."""
        return self.user_s == 0 and self.system_s >= KERNEL_SHARE * self.interval_s

    @property
    def waited(self) -> bool:
        """It waited in the kernel through the command's time: in D state
        when the time ran out, there since the command began (or nearly),
        and almost never on a CPU.  It may have moved on while it was
        sampled: the probe's own SSH session and processes add pages to
        the LRU lists, which can end a compaction throttled on too many
        isolated pages (seen: a kernel that never put isolated pages back,
        whose `echo 1 > compact_memory` waited 660 s and went on 2 s after
        the harness's timeout)."""
        return (self.ran_for is not None and self.state_before == "D" and self.age_s >= ALIVE_SHARE * self.ran_for
                and self.cpu_s <= WAITING_CPU_SHARE * self.age_s)

    @property
    def held(self) -> bool:
        """The kernel holds it: asleep in it, spinning in it, or it waited
        in it all along."""
        return self.asleep or self.spinning or self.waited

    @property
    def busy(self) -> bool:
        """It used a tenth of the interval or more on a CPU."""
        return self.user_s + self.system_s >= 0.1 * self.interval_s

    def describe(self) -> str:
        what = self.cmdline.strip() or self.comm
        if self.asleep:
            how = (f"asleep in the kernel (D state) in {self.wchan or 'an unknown function'}, "
                   f"not once on a CPU in {self.interval_s:.1f} s")
        elif self.spinning:
            how = f"spinning in the kernel: {self.system_s:.2f} s of system time and no user time in {self.interval_s:.1f} s"
        elif self.waited:
            where = self.wchan_before or (self.wchan if self.state == "D" else "")
            how = (f"in D state in {where or 'an unknown function'} when the time ran out, "
                   f"on a CPU for {self.cpu_s:.1f} s of its {self.age_s:.0f} s: it waited in the kernel all along"
                   + ("" if self.state.endswith("D") else f", and went on while it was sampled (state {self.state})"))
        else:
            how = f"{self.user_s:.2f} s of user time and {self.system_s:.2f} s of system time in {self.interval_s:.1f} s"
        return f"{what} (task {self.tid}, state {self.state}): {how}"


def parse_stat(line: str) -> Optional[tuple[int, Sample]]:
    """(tid, Sample) of a /proc/PID/stat line; None when it is not one.
    The comm is between the first '(' and the last ')': it may hold both."""
    try:
        head, rest = line.split(" (", 1)
        comm, tail = rest.rsplit(") ", 1)
        fields = tail.split()
        return int(head), Sample(fields[0], int(fields[11]), int(fields[12]), comm, int(fields[19]),
                                 bool(int(fields[6]) & PF_KTHREAD))
    except (ValueError, IndexError):
        return None


def tasks(text: str, ran_for: Optional[float] = None) -> list[Task]:
    """The user tasks of the probe's first sample, with what they did until
    the second (nothing when they were gone by then, or their tid was
    reused: state "X->gone").  ``ran_for``: how long the command had run."""
    samples: dict[str, dict[int, Sample]] = {"A": {}, "B": {}}
    slices: dict[str, dict[int, int]] = {"As": {}, "Bs": {}}
    wchans: dict[str, dict[int, str]] = {"Aw": {}, "Bw": {}}
    uptime: dict[str, float] = {}
    wchan: dict[int, str] = {}
    cmdline: dict[int, str] = {}
    stack: dict[int, list[str]] = {}
    probe: Optional[int] = None
    for line in text.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "S" and rest.strip().isdigit():
            probe = int(rest)
        elif tag in samples and rest.startswith("uptime "):
            try:
                uptime[tag] = float(rest.split()[1])
            except (IndexError, ValueError):
                pass
        elif tag in samples:
            parsed = parse_stat(rest)
            if parsed:
                samples[tag][parsed[0]] = parsed[1]
        elif tag in wchans:
            tid_text, _, value = rest.partition(" ")
            if tid_text.isdigit():
                wchans[tag][int(tid_text)] = "" if value.strip() == "0" else value.strip()
        elif tag in slices:
            parts = rest.split()
            if len(parts) == 4 and all(p.isdigit() for p in parts):
                slices[tag][int(parts[0])] = int(parts[3])
        elif tag in ("W", "C", "K"):
            tid_text, _, value = rest.partition(" ")
            if not tid_text.isdigit():
                continue
            tid = int(tid_text)
            if tag == "W":
                wchan[tid] = "" if value.strip() == "0" else value.strip()
            elif tag == "C":
                cmdline[tid] = value.strip()
            else:
                stack.setdefault(tid, []).append(value.strip())
    interval = uptime.get("B", 0.0) - uptime.get("A", 0.0)
    if interval <= 0:
        interval = 1.0
    found = []
    for tid, before in samples["A"].items():
        if tid == probe or before.kthread:
            continue
        after = samples["B"].get(tid)
        age = max(0.0, uptime.get("A", 0.0) - before.start / TICKS)
        common = dict(cmdline=cmdline.get(tid, ""), wchan=wchan.get(tid, wchans["Bw"].get(tid, "")), stack=stack.get(tid, []),
                      state_before=before.state, wchan_before=wchans["Aw"].get(tid, ""), age_s=age,
                      cpu_s=(before.utime + before.stime) / TICKS, ran_for=ran_for)
        if after is None or after.start != before.start:
            found.append(Task(tid, before.comm, f"{before.state}->gone", 0.0, 0.0, interval, None, **common))
            continue
        state = after.state if before.state == after.state else f"{before.state}->{after.state}"
        ran = slices["Bs"][tid] - slices["As"][tid] if tid in slices["As"] and tid in slices["Bs"] else None
        found.append(Task(tid, after.comm, state, (after.utime - before.utime) / TICKS,
                          (after.stime - before.stime) / TICKS, interval, ran, **common))
    return found


def held(text: str, ran_for: Optional[float] = None) -> list[Task]:
    """The tasks the kernel holds, from the probe's output."""
    return [t for t in tasks(text, ran_for) if t.held]


def busy(text: str, ran_for: Optional[float] = None) -> list[Task]:
    """The tasks that used the CPU and are not held."""
    return [t for t in tasks(text, ran_for) if t.busy and not t.held]
