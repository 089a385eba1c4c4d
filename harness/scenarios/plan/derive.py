"""The model's view of a plan, derived from the guest's commands.

A plan states what the guest does (mmdrive's ``alloc``, ``mlock``, ``pin``,
``fork_share``, ... in ``setup``; one measured command per step; ``before``
and ``after`` commands).  From those this module derives what the model
needs: the pages (kind and state, in order), each step's call with its
entries, flags and query, and the state changes between steps.  A plan may
still state the model's view by hand (for what cannot be derived, or for
the record); then both are compared before any guest boots, and a plan
whose two halves disagree is refused, naming both sides.

Pure: works on the plan's text only.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

from harness.errors import UserError
from harness.model.page import parse_page_spec

#: mmdrive's commands: (least, most) arguments after the name (None: any).
COMMANDS: dict[str, tuple[int, Optional[int]]] = {
    "alloc": (2, None), "touch": (2, 2), "touch_until": (5, 5), "readfault": (2, 2),
    "mlock": (2, 2), "munlock": (2, 2), "pin": (2, 2), "unpin": (0, 0), "fork_share": (2, 2),
    "unmap": (1, 1), "move": (1, None), "query": (1, None), "mbind": (4, 5), "migrate_pages": (2, 2),
    "nodes": (2, 2), "pfns": (2, 2), "smaps": (1, 1), "vmstat": (0, 0), "kpageflags": (1, 2), "pageflags": (2, 2), "drain": (0, 0), "write": (2, None), "holes": (1, 1), "release": (2, 2), "writeback": (2, 2),
    "mark": (1, None), "soft_offline": (2, 2), "sleep": (1, 1), "echo": (0, None), "exit": (0, 0),
    "verify": (0, 2), "memcg": (1, 1), "swapout": (1, 1), "cap": (2, 2), "cpuset": (2, 2),
}
#: Where a plan's files are on ramfs (its prepare: mounts it there): a
#: file system with neither ->migratepage nor ->writepage.
RAMFS = "/mnt/ramfs/"
ALLOC_OPTIONS = ("thp", "nothp", "hugetlb", "shared", "notouch", "dontfork", "uring", "align=2M", "align=2m", "align=4K",
                 "align=4k")
HUGE = 512


class PlanError(UserError):
    """A plan that cannot run: names the file, the step and the key."""


#: mTHP sizes an alloc may ask for (mthp=SIZE): the anonymous orders 2..8
#: with 4K pages, as the kernel's hugepages-<size>kB directories name them.
MTHP_SIZES_KB = tuple(4 << order for order in range(2, 9))


def mthp_pages(text: str, where: str) -> int:
    """Pages per folio of an ``mthp=SIZE`` (16K .. 1M)."""
    value = text.strip().upper()
    try:
        kb = int(value[:-1]) * (1024 if value.endswith("M") else 1) if value[-1:] in ("K", "M") else -1
    except ValueError:
        kb = -1
    if kb not in MTHP_SIZES_KB:
        raise PlanError(f"{where}: an mTHP size is one of {', '.join(f'{k}K' for k in MTHP_SIZES_KB)}, not {text!r}",
                        hint="2M is a PMD THP: alloc ... thp")
    return kb // 4


#: Commands a plan may not use, why, and what to do instead.
REFUSED = {
    "holes": ("it frees the pages at even physical addresses, which the plan cannot know, so the model's view "
              "cannot be derived", "release a whole region (release NAME COUNT), or fragment memory in a scenario class"),
    "write": ("it changes a kernel setting the model does not follow",
              "set it in the plan's prepare: (guest shell commands before the workload)"),
    "exit": ("it ends the workload; the harness ends the script itself", "drop it"),
}


@dataclass
class ModelView:
    """The model's pages as a plan's commands leave them."""

    specs: list
    #: {(region, index): (model page, subpage)}
    index: dict
    #: Per model page: None, or (copies made, node of the last) after copy-on-write.
    copies: list


@dataclass
class Region:
    name: str
    pages: int
    kind: str  # anon, thp, mthp, hugetlb, file
    node: int
    shared: bool
    dontfork: bool
    #: Per page: "absent" (never touched), "zero" (read-faulted: the zero
    #: page) or "present".
    present: list[str]
    mapped: bool = True
    mlocked: set = field(default_factory=set)
    pins: dict = field(default_factory=dict)
    #: Per page: how many forked children map it too (page_mapcount - 1).
    forked: dict = field(default_factory=dict)
    #: Per page: the node a new page for the address comes from (the VMA's
    #: policy: alloc's node=, a later mbind; the CPU's node 0 by default),
    #: None where the plan cannot know (interleave).
    policy: list = field(default_factory=list)
    #: Per page replaced by a new one (copy-on-write): (how many times, its node).
    copies: dict = field(default_factory=dict)
    #: A file region on ramfs (its file under ``RAMFS``).
    ramfs: bool = False
    #: A file region's pages written since their last writeback (``sync`` writes them back).
    dirty: set = field(default_factory=set)
    #: A file region's pages under writeback (``writeback`` started it; a throttled disk keeps it going).
    writeback: set = field(default_factory=set)
    #: Allocated after ``memcg``: its pages are charged to that memory cgroup (``swapout`` reclaims them).
    charged: bool = False
    #: Pages read back from swap: anonymous pages that stay in the swap cache.
    swapcache: set = field(default_factory=set)
    #: Pages per folio of an mthp region (alloc's mthp=SIZE), else 0.
    folio: int = 0

    @property
    def block(self) -> int:
        """Pages per model page: a huge page's or an mTHP folio's, else 1."""
        return self.folio if self.kind == "mthp" else HUGE if self.kind in ("thp", "hugetlb") else 1


def parse_ranges(text: str, count: int, where: str) -> list[int]:
    """mmdrive's RANGES: ``0-3,10,11``, each index < count."""
    out: list[int] = []
    for item in text.split(","):
        lo, dash, hi = item.partition("-")
        try:
            first, last = int(lo), int(hi) if dash else int(lo)
        except ValueError:
            raise PlanError(f"{where}: bad page range {item!r} in {text!r}") from None
        if first > last:
            raise PlanError(f"{where}: range {item} is reversed")
        if last >= count:
            raise PlanError(f"{where}: page {last} is outside its region ({count} pages)")
        out.extend(range(first, last + 1))
    return out


def split_commands(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def check_command(words: list[str], where: str) -> None:
    name = words[0]
    if name not in COMMANDS:
        raise PlanError(f"{where}: unknown workload command {name!r}", hint=f"the commands are: {', '.join(COMMANDS)} (see README)")
    least, most = COMMANDS[name]
    n = len(words) - 1
    if n < least or (most is not None and n > most):
        want = f"{least}" if least == most else f"{least} to {most}" if most is not None else f"at least {least}"
        raise PlanError(f"{where}: {name} takes {want} argument(s), got {n}: {' '.join(words)!r}")


class Layout:
    """The guest's regions as mmdrive builds them, command by command."""

    def __init__(self) -> None:
        self.regions: dict[str, Region] = {}
        #: ``memcg`` ran: regions allocated from now on are charged to it.
        self.memcg = False
        #: CAP_SYS_NICE is in the workload's effective set (``cap sys_nice off`` drops it).
        self.sys_nice = True
        #: The nodes the workload's cpuset allows (``cpuset DIR MEMS``); None: every node.
        self.mems: Optional[list[int]] = None

    def region(self, name: str, where: str) -> Region:
        if name not in self.regions:
            raise PlanError(f"{where}: no region named {name!r} (regions: {', '.join(self.regions) or 'none yet'})")
        return self.regions[name]

    def apply(self, words: list[str], where: str) -> None:
        """One command's effect on the regions, as the kernel gives it; a
        command whose effect the plan cannot know is refused."""
        check_command(words, where)
        name, args = words[0], words[1:]
        if name in REFUSED:
            raise PlanError(f"{where}: {name}: {REFUSED[name][0]}", hint=REFUSED[name][1])
        if name == "mark" and args[0] == "harness":
            raise PlanError(f"{where}: mark harness ...: the harness's own step markers", hint="mark your own text")
        if name == "alloc":
            self._alloc(args, where)
        elif name == "writeback":
            region = self.region(args[0], where)
            if region.kind != "file":
                raise PlanError(f"{where}: writeback of {region.name!r}, which is not a file= region")
            indices = [i for i in parse_ranges(args[1], region.pages, where) if i in region.dirty]
            # clear_page_dirty_for_io(), then set_page_writeback(): clean and under writeback
            region.dirty.difference_update(indices)
            region.writeback.update(indices)
        elif name in ("touch", "mlock", "munlock", "pin", "readfault", "nodes", "fork_share", "touch_until"):
            region = self.region(args[0], where)
            if not region.mapped:
                raise PlanError(f"{where}: region {region.name!r} is unmapped")
            if region.kind == "uring":
                raise PlanError(f"{where}: {name} of {region.name!r}, an io_uring ring: the plan follows a ring page as "
                                "it was mapped, nothing else")
            indices = parse_ranges(args[1], region.pages, where)
            self._touching(name, region, indices, where)
        elif name == "unpin":
            for region in self.regions.values():
                region.pins.clear()
        elif name == "memcg":
            self.memcg = True
        elif name == "cap":
            if args[0] != "sys_nice" or args[1] not in ("on", "off"):
                raise PlanError(f"{where}: cap {' '.join(args)}: only 'cap sys_nice on' and 'cap sys_nice off' are known")
            self.sys_nice = args[1] == "on"
        elif name == "cpuset":
            self._cpuset(args[1], where)
        elif name == "swapout":
            self._swapout(where)
        elif name == "unmap":
            self.region(args[0], where).mapped = False
        elif name == "release":
            self._release(self.region(args[0], where), args[1], where)

    def _cpuset(self, text: str, where: str) -> None:
        """cpuset DIR MEMS: move_pages may target only MEMS from now on,
        and the regions' policies are rebound into MEMS (mpol_rebind_mm():
        nodes_remap() sends every node to the one node of a one-node set).
        Allocations outside MEMS are refused (mbind would be -EINVAL)."""
        try:
            mems = sorted({int(n) for n in text.split(",")})
        except ValueError:
            raise PlanError(f"{where}: cpuset ... {text!r}: give the nodes as a comma list, e.g. 0") from None
        if self.mems is not None:
            raise PlanError(f"{where}: a second cpuset: the model follows one", hint="join one cpuset in the setup")
        for region in self.regions.values():
            if any(node is not None and node not in mems for node in region.policy):
                if len(mems) != 1:
                    raise PlanError(f"{where}: cpuset {text}: region {region.name!r} has a policy outside it, "
                                    "and the rebinding into several nodes is not followed", hint="use a one-node cpuset")
                region.policy = [None if node is None else mems[0] for node in region.policy]
        self.mems = mems

    def measured(self, words: list[str], where: str) -> None:
        """A measured call's effect on what the model does not follow
        itself: mbind gives the range's VMA a new policy."""
        if words[0] != "mbind" or words[3] == "none":
            return
        region = self.region(words[1], where)
        mode = words[5][5:] if len(words) == 6 else "bind"
        nodes = [int(n) for n in words[3].split(",")]
        node = (0 if 0 in nodes else nodes[0]) if mode == "bind" else nodes[0] if mode == "preferred" else \
            0 if mode == "default" else None
        for i in parse_ranges(words[2], region.pages, where):
            region.policy[i] = node

    def _release(self, region: Region, count_text: str, where: str) -> None:
        """release NAME COUNT: MADV_DONTNEED of the COUNT pages at the lowest
        PFNs (then the absent ones).  Which pages those are is known only
        when it is none or every page with a frame."""
        try:
            count = int(count_text)
        except ValueError:
            raise PlanError(f"{where}: release: bad page count {count_text!r}") from None
        if count > region.pages:
            raise PlanError(f"{where}: release: {region.name!r} has {region.pages} pages, not {count}")
        if region.kind in ("thp", "mthp", "hugetlb", "uring") or region.mlocked:
            raise PlanError(f"{where}: release of {region.name!r}: MADV_DONTNEED " +
                            ("fails on an mlocked range (EINVAL)" if region.mlocked else
                             f"of part of a {region.kind} region splits or refuses it"), hint="release a base-page region")
        framed = [i for i, state in enumerate(region.present) if state in ("present", "zero")]
        unframed_live = [i for i, state in enumerate(region.present) if state == "swapped"]
        if count == 0:
            return
        if count < len(framed) or (count > len(framed) and unframed_live and count < region.pages):
            raise PlanError(
                f"{where}: release {region.name} {count}: it frees the {count} pages of {region.name!r} at the lowest "
                f"physical addresses, and which of its {len(framed)} pages those are the plan cannot know, so the "
                "model's view cannot be derived",
                hint=f"release all of them (release {region.name} {region.pages}) or none")
        for i in framed + (unframed_live if count > len(framed) else []):
            self._drop(region, i)

    def _drop(self, region: Region, i: int) -> None:
        """Page ``i`` leaves the address space (its next touch faults in a
        new page; a shared mapping's page stays in the page cache)."""
        region.present[i] = "absent"
        region.swapcache.discard(i)
        if not region.shared:
            region.pins.pop(i, None)
            region.forked.pop(i, None)

    def _alloc(self, args: list[str], where: str) -> None:
        name = args[0]
        if name in self.regions:
            raise PlanError(f"{where}: region {name!r} already exists")
        try:
            pages = int(args[1])
        except ValueError:
            raise PlanError(f"{where}: bad page count {args[1]!r}") from None
        node, opts, file, folio = 0, set(), None, 0
        for option in args[2:]:
            if option.startswith("mthp="):
                folio = mthp_pages(option[5:], f"{where}: {option}")
                opts.add("mthp")
            elif option.startswith("node="):
                try:
                    node = int(option[5:])
                except ValueError:
                    raise PlanError(f"{where}: bad node in {option!r}") from None
            elif option.startswith("file=") and len(option) > 5:
                file = option[5:]
            elif option in ALLOC_OPTIONS or option == "sync":
                opts.add(option)
            else:
                raise PlanError(f"{where}: unknown alloc option {option!r}",
                                hint=f"alloc takes node=N, file=PATH [sync], mthp=SIZE and {', '.join(ALLOC_OPTIONS[:7])}")
        if self.mems is not None and (node not in self.mems or not any(o.startswith("node=") for o in args[2:])):
            raise PlanError(f"{where}: alloc {name} after cpuset {','.join(map(str, self.mems))}: give it node=N inside the "
                            "cpuset (a bind outside it is -EINVAL, and where an unbound region lands the plan cannot say)")
        if "sync" in opts and file is None:
            raise PlanError(f"{where}: sync needs file=PATH")
        if file is not None and opts & {"thp", "mthp", "hugetlb", "shared"}:
            raise PlanError(f"{where}: a file= region takes no thp, mthp, hugetlb or shared (a file mapping is shared)")
        if "mthp" in opts and opts & {"thp", "nothp", "hugetlb", "shared"}:
            raise PlanError(f"{where}: an mthp= region is private anonymous memory: no thp, nothp, hugetlb or shared")
        if "uring" in opts and (pages != 1 or file is not None or opts - {"uring", "dontfork"}):
            raise PlanError(f"{where}: a uring region is one page (an io_uring's SQ/CQ ring): alloc NAME 1 uring [node=N] [dontfork]")
        kind = "file" if file else "hugetlb" if "hugetlb" in opts else "thp" if "thp" in opts else "mthp" if folio \
            else "uring" if "uring" in opts else "anon"
        block = folio or HUGE
        if kind in ("thp", "mthp", "hugetlb") and pages % block:
            raise PlanError(f"{where}: a {kind} region takes a multiple of {block} pages, not {pages}")
        touched = "notouch" not in opts
        ramfs = file is not None and file.startswith(RAMFS)
        if ramfs and "sync" in opts:
            raise PlanError(f"{where}: a file on ramfs ({RAMFS}) is never written back: drop sync")
        self.regions[name] = Region(name, pages, kind, node, "shared" in opts or file is not None, "dontfork" in opts,
                                    ["present" if touched else "absent"] * pages,
                                    dirty=set(range(pages)) if touched and "sync" not in opts and file else set(),
                                    charged=self.memcg, policy=[node] * pages, ramfs=ramfs, folio=folio)

    def _swapout(self, where: str) -> None:
        """memory.force_empty: every page charged to the memory cgroup goes
        to swap (its PTE becomes a swap entry).  Only private anonymous base
        pages, not mlocked or pinned (reclaim keeps those), are derived."""
        if not self.memcg:
            raise PlanError(f"{where}: swapout before memcg: no region is charged to a memory cgroup",
                            hint="join the cgroup (memcg DIR) before the alloc of the region to swap out")
        for region in self.regions.values():
            if not region.charged or not region.mapped:
                continue
            if region.kind != "anon" or region.shared:
                raise PlanError(f"{where}: swapout of {region.name!r}: only private anonymous base-page regions "
                                "are derived (a THP is split, shmem and file pages take other paths)",
                                hint="allocate that region before memcg")
            if region.mlocked or region.pins or any(region.forked.values()):
                raise PlanError(f"{where}: swapout of {region.name!r}, which has mlocked, pinned or shared pages "
                                "(reclaim keeps them or leaves them half-unmapped)", hint="swap out before mlock, pin or fork_share")
            for i, state in enumerate(region.present):
                if state == "present":
                    region.present[i] = "swapped"
            region.swapcache.clear()

    def _touching(self, name: str, region: Region, indices: list[int], where: str) -> None:
        if name in ("touch", "touch_until", "mlock"):
            # a write fault (mlock populates writable mappings by writing)
            for i in indices:
                if region.forked.get(i) and not region.shared and region.present[i] == "present":
                    self._copy_on_write(region, i, where)
                if region.present[i] == "swapped":
                    # do_swap_page(): reuse_swap_page() takes the only
                    # user's page out of the swap cache on a write fault
                    region.swapcache.discard(i)
                region.present[i] = "present"
            if region.kind == "file" and name != "mlock":
                region.dirty.update(indices)
        elif name in ("readfault", "nodes"):
            for i in indices:
                if region.present[i] == "absent":
                    region.present[i] = "present" if region.shared else "zero"
                elif region.present[i] == "swapped":
                    # do_swap_page() on a read fault: the page stays in the
                    # swap cache (the swap device is not near full)
                    region.present[i] = "present"
                    region.swapcache.add(i)
        if name == "mlock":
            region.mlocked.update(indices)
        elif name == "munlock":
            region.mlocked.difference_update(indices)
        elif name == "pin":
            for i in indices:
                if region.present[i] != "present":
                    raise PlanError(f"{where}: pin of page {i} of {region.name!r}, which is not present "
                                    "(vmsplice would pin the zero page): touch it first")
                region.pins[i] = region.pins.get(i, 0) + 1
        elif name == "fork_share":
            # fork copies the page tables of every private mapping (but
            # MADV_DONTFORK ones): each of their present pages is mapped by
            # the child too; a shared mapping's page tables are not copied,
            # so the child maps only the pages of NAME it reads (RANGES)
            for other in self.regions.values():
                if other.mapped and not other.dontfork and not other.shared:
                    for i, state in enumerate(other.present):
                        if state == "present":
                            other.forked[i] = other.forked.get(i, 0) + 1
            if region.shared and not region.dontfork:
                present = [i for i, state in enumerate(region.present) if state == "present"]
                if sorted(set(indices)) != present:
                    # the child's read fault maps the page cache's pages around
                    # the address as well (do_fault_around(): a 16-page window
                    # aligned on the virtual address, within the VMA)
                    raise PlanError(f"{where}: fork_share of part of the shared region {region.name!r}: the child's read "
                                    "fault maps the neighbouring pages too (fault-around), and which ones depends on "
                                    "the region's virtual address, so the model's view cannot be derived",
                                    hint=f"share every present page of it (fork_share {region.name} "
                                         f"{derive_ranges(present)}) or none")
                for i in indices:
                    region.forked[i] = region.forked.get(i, 0) + 1

    def _copy_on_write(self, region: Region, i: int, where: str) -> None:
        """A write to a private page a child maps too: do_wp_page() gives
        this process a new page, on the node its VMA's policy names; the
        child keeps the old one, and with it any pin."""
        if region.kind != "anon":
            raise PlanError(f"{where}: a write to page {i} of {region.name!r}, a {region.kind} page shared with a child: "
                            "whether the copy is a huge page or a split depends on what the allocator finds",
                            hint="write to it before fork_share, or not at all")
        node = region.policy[i] if i < len(region.policy) else region.node
        if node is None:
            raise PlanError(f"{where}: a write to page {i} of {region.name!r}, shared with a child, under an interleave "
                            "policy: the node of its copy cannot be derived")
        region.forked.pop(i)
        region.pins.pop(i, None)
        region.swapcache.discard(i)
        count, _ = region.copies.get(i, (0, None))
        region.copies[i] = (count + 1, node)

    def fingerprint(self) -> tuple:
        """Everything a command can change, to tell whether one did."""
        return tuple((r.name, r.mapped, tuple(r.present), tuple(sorted(r.mlocked)), tuple(sorted(r.pins.items())),
                      tuple(sorted(r.forked.items())), tuple(sorted(r.copies.items())), tuple(sorted(r.dirty)),
                      tuple(sorted(r.writeback)), tuple(sorted(r.swapcache))) for r in self.regions.values())

    # ------------------------------------------------------------------
    def model_pages(self, where: str) -> "ModelView":
        """The model's page specs, {(region, index): (model page, subpage)},
        and per model page its copies (copy-on-write)."""
        specs: list[str] = []
        index: dict[tuple[str, int], tuple[int, int]] = {}
        copies: list = []
        for region in self.regions.values():
            if not region.mapped:
                continue
            if region.kind in ("anon", "file"):
                for i, state in enumerate(region.present):
                    if state != "present":
                        continue
                    index[(region.name, i)] = (len(specs), 0)
                    if region.kind == "file" and region.ramfs:
                        # ramfs: no ->migratepage and no ->writepage, and its
                        # pages stay dirty (__set_page_dirty_no_writeback)
                        kind = "file_nomigrate+dirty+nowritepage"
                    elif region.kind == "file":
                        # written through the mapping: the file system gave it buffer heads
                        kind = "file+private" + ("+dirty" if i in region.dirty else "") + ("+writeback" if i in region.writeback else "")
                    else:
                        kind = "shmem" if region.shared else "anon_swapcache" if i in region.swapcache else "anon"
                    specs.append(self._spec(kind, region, [i]))
                    copies.append(region.copies.get(i))
                continue
            size = region.block
            kind = f"mthp+order={size.bit_length() - 1}" if region.kind == "mthp" else region.kind
            for block in range(region.pages // size):
                subs = list(range(block * size, (block + 1) * size))
                states = {region.present[i] for i in subs}
                if states != {"present"}:
                    raise PlanError(f"{where}: huge page {block} of {region.name!r} is not wholly present: "
                                    "the model's view cannot be derived")
                mlocked = {i in region.mlocked for i in subs}
                if len(mlocked) > 1:
                    raise PlanError(f"{where}: {region.name!r} is partly mlocked: the model's view cannot be derived")
                for i in subs:
                    index[(region.name, i)] = (len(specs), i - block * size)
                specs.append(self._spec(kind, region, subs))
                copies.append(None)
        return ModelView(specs, index, copies)

    @staticmethod
    def _spec(kind: str, region: Region, subs: list[int]) -> str:
        flags = []
        if any(i in region.mlocked for i in subs):
            flags.append("mlocked")
        pins = sum(region.pins.get(i, 0) for i in subs)
        if pins:
            flags.append("pinned" if pins == 1 else f"pins={pins}")
        children = max(region.forked.get(i, 0) for i in subs)
        if children:
            flags.append("shared" if children == 1 else f"mapcount={children + 1}")
        return "+".join([kind, *flags]) + (f"@{region.node}" if region.node else "")

    def fault(self, region: Region, i: int, where: str = "") -> Optional[str]:
        """The move_pages fault kind of an address that has no model page."""
        if not region.mapped:
            return "no_vma"
        state = region.present[i]
        if state == "swapped":
            raise PlanError(f"{where}: page {i} of {region.name!r} is swapped out: the model has no page for it",
                            hint=f"read it back first (readfault {region.name} RANGES)")
        if state == "zero":
            return "zero_page"
        if state == "absent":
            return "untouched_shared" if region.shared else "untouched_anon"
        return None


def compress(specs: list[str]) -> list[str]:
    """['anon', 'anon', 'thp'] -> ['anon*2', 'thp']."""
    out: list[list] = []
    for spec in specs:
        if out and out[-1][0] == spec:
            out[-1][1] += 1
        else:
            out.append([spec, 1])
    return [s if n == 1 else _with_count(s, n) for s, n in out]


def _with_count(spec: str, n: int) -> str:
    if "@" in spec:
        body, _, node = spec.rpartition("@")
        return f"{body}*{n}@{node}"
    return f"{spec}*{n}"


def addresses(layout: Layout, tokens: list[str], where: str, need_node: bool) -> list[tuple[str, int, Optional[int]]]:
    """(region, index, node) of each address of a move/query, in order."""
    out = []
    for token in tokens:
        target, eq, node_text = token.partition("=")
        region_name, colon, ranges = target.partition(":")
        if not colon or not ranges:
            raise PlanError(f"{where}: entry {token!r} is not NAME:RANGES{'=NODE' if need_node else ''}")
        if need_node and not eq:
            raise PlanError(f"{where}: entry {token!r} has no =NODE")
        node = None
        if eq:
            try:
                node = int(node_text)
            except ValueError:
                raise PlanError(f"{where}: bad node in entry {token!r}") from None
        region = layout.region(region_name, where)
        out += [(region_name, i, node) for i in parse_ranges(ranges, region.pages, where)]
    return out


def derive_call(layout: Layout, words: list[str], index: dict, where: str) -> Optional[dict]:
    """The model's call step for one measured command, or None when it
    cannot be derived."""
    name, args = words[0], words[1:]
    if name == "move":
        flags = None
        if args and args[0] == "all":
            flags, args = "MOVE_ALL", args[1:]
        step: dict = {"call": "move_pages", "entries": _entries(layout, addresses(layout, args, where, need_node=True), index, where)}
        if flags:
            step["flags"] = flags
        if not layout.sys_nice:
            step["sys_nice"] = False
        if layout.mems is not None:
            step["mems"] = list(layout.mems)
        return step
    if layout.mems is not None and name in ("mbind", "migrate_pages"):
        raise PlanError(f"{where}: {name} after cpuset: the model follows a cpuset's nodes for move_pages only",
                        hint="measure move_pages in the cpuset, or mbind and migrate_pages outside it")
    if name == "mbind":
        region = layout.region(args[0], where)
        if "," in args[1]:
            raise PlanError(f"{where}: mbind needs one contiguous range, not {args[1]!r}")
        if len(args) == 5 and args[4] != "mode=bind":
            return None
        if args[2] == "none" or args[3] == "0":
            return None
        indices = parse_ranges(args[1], region.pages, where)
        if any((region.name, i) not in index for i in indices):
            return None
        pages = sorted({index[(region.name, i)][0] for i in indices})
        nodes = [int(n) for n in args[2].split(",")]
        step = {"call": "mbind", "nodes": nodes, "flags": args[3].replace("|", ","), "pages": _ranges_text(pages)}
        if not layout.sys_nice:
            step["sys_nice"] = False
        return step
    if name == "migrate_pages":
        step = {"call": "migrate_pages", "from": [int(n) for n in args[0].split(",")], "to": [int(n) for n in args[1].split(",")]}
        if not layout.sys_nice:
            step["move_all"] = False
        return step
    if name == "soft_offline":
        region = layout.region(args[0], where)
        i = parse_ranges(args[1], region.pages, where)[0]
        mapped = index.get((region.name, i))
        if mapped is None or region.kind not in ("anon", "hugetlb"):
            return None
        # a hugetlb page is offlined whole, from any of its addresses
        return {"call": "soft_offline", "page": mapped[0]}
    return None


def _entries(layout: Layout, addrs: list, index: dict, where: str) -> list[dict]:
    """Model entries for (region, index, node) addresses: a page (with its
    subpage in a huge page) or the fault the address gives."""
    entries = []
    for region_name, i, node in addrs:
        mapped = index.get((region_name, i))
        entry: dict
        if mapped is None:
            entry = {"fault": layout.fault(layout.regions[region_name], i, where)}
        elif layout.regions[region_name].kind in ("anon", "file"):
            entry = {"page": mapped[0]}
        else:
            entry = {"page": mapped[0], "subpages": mapped[1]}
        if node is not None:
            entry["node"] = node
        entries.append(entry)
    return entries


def query_entries(layout: Layout, words: list[str], index: dict, where: str, call: dict):
    """The model's query for a ``query`` after a step: ``True`` when it asks
    for a move's own addresses in their order, else its own addresses."""
    entries = _entries(layout, addresses(layout, words[1:], where, need_node=False), index, where)
    if call.get("call") == "move_pages" and entries == [{k: v for k, v in e.items() if k != "node"} for e in call["entries"]]:
        return True
    return entries


def derive_ranges(indices: list[int]) -> str:
    return _ranges_text(sorted(indices)) or "none"


def _ranges_text(indices: list[int]) -> str:
    parts, start = [], None
    for k, i in enumerate(indices):
        if start is None:
            start = i
        if k + 1 == len(indices) or indices[k + 1] != i + 1:
            parts.append(str(start) if start == i else f"{start}-{i}")
            start = None
    return ",".join(parts)


def state_changes(before: "ModelView", after: "ModelView") -> list[dict]:
    """``set`` steps that turn the pages ``before`` into ``after`` (the same
    pages with other states, e.g. after ``unpin``; or a new page on the
    policy's node, after a copy-on-write)."""
    old = [parse_page_spec(s)[0] for s in before.specs]
    new = [parse_page_spec(s)[0] for s in after.specs]
    groups: dict[tuple, list[int]] = {}
    for i, (a, b) in enumerate(zip(old, new)):
        copied = after.copies[i] != before.copies[i]
        if a == b and not copied:
            continue
        keys = ("pins", "mlocked", "mapcount", "dirty", "writeback")
        diff = tuple(sorted([(k, getattr(b, k)) for k in keys if getattr(a, k) != getattr(b, k) or copied]
                            + ([("node", after.copies[i][1])] if copied else [])))
        groups.setdefault(diff, []).append(i)
    return [dict({"pages": _ranges_text(idx)}, **dict(diff)) for diff, idx in groups.items()]


def describe(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 300 else text[:297] + "..."
