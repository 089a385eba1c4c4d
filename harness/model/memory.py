"""The guest memory the callers see: page objects, where they are, and
whether a THP has been split.  Callers turn objects into list entries
(``PageRun``) and fold migrate_pages() outcomes back in."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from harness.model.engine import PageRun
from harness.model.migrate import CallResult
from harness.model.page import Page, PageKind


@dataclass
class MemObject:
    """One page as the workload allocated it: an order-0 page, a THP, a
    hugetlb page or a driver's movable page."""

    page: Page
    node: int
    #: Per-subpage nodes once a THP has been split (None while whole).
    sub_nodes: Optional[list[int]] = None
    #: Isolated in the batch being built (whole object, or subpages once split).
    isolated: bool = False
    isolated_subs: set = field(default_factory=set)

    @property
    def split(self) -> bool:
        return self.sub_nodes is not None

    @property
    def subpages(self) -> range:
        """The subpage indices of a split large page."""
        return range(len(self.sub_nodes or ()))

    def node_of(self, sub: int = 0) -> int:
        if self.sub_nodes is not None:
            return self.sub_nodes[sub]
        return self.node

    def entry(self, origin: int, sub: Optional[int] = None) -> PageRun:
        """The list entry isolating this object (or one subpage once split)."""
        if self.sub_nodes is not None:
            sub = 0 if sub is None else sub
            base = self.page.subpage(node=self.sub_nodes[sub])
            return PageRun(base, origin, sub)
        return PageRun(self.page.with_(node=self.node), origin, None)

    def is_isolated(self, sub: int) -> bool:
        return sub in self.isolated_subs if self.split else self.isolated

    def mark_isolated(self, sub: int) -> None:
        if self.split:
            self.isolated_subs.add(sub)
        else:
            self.isolated = True


#: PAGEVEC_SIZE: an lru_add pagevec drains onto the LRU when it holds this
#: many pages (or at once for a compound page).
PAGEVEC_SIZE = 15


class Memory:
    """All page objects of a scenario, in address order."""

    def __init__(self, pages: list[Page]) -> None:
        self.objects = [MemObject(page, page.node) for page in pages]
        #: Pages put back during the current syscall that sit in the CPU's
        #: lru_add pagevec: not on an LRU, so isolate_lru_page() refuses
        #: them (-EBUSY) until it drains.  migrate_prep() drains it at the
        #: start of each syscall (``new_call``).
        self.pagevec: list[tuple[int, int]] = []

    def __len__(self) -> int:
        return len(self.objects)

    def __getitem__(self, index: int) -> MemObject:
        return self.objects[index]

    def apply(self, result: CallResult) -> None:
        """Fold one migrate_pages() call's outcomes back into memory."""
        for outcome in result.outcomes:
            obj = self.objects[outcome.origin]
            if outcome.split and obj.sub_nodes is None:
                obj.sub_nodes = [obj.node] * obj.page.nr_pages
                obj.page = obj.page.subpage(deferred_split=False)
            if obj.page.kind is PageKind.MTHP and outcome.page is not None:
                # the folio that stayed keeps its queueing, a copy inherits it
                obj.page = obj.page.with_(partially_mapped=outcome.page.partially_mapped)
            if obj.page.kind.is_thp and outcome.page is not None:
                # a THP that stays keeps its place on the deferred split
                # queue; one migrated is a new THP, on no queue
                obj.page = obj.page.with_(deferred_split=outcome.result != "migrated" and outcome.page.deferred_split)
            if outcome.result != "migrated":
                continue
            if obj.sub_nodes is not None and outcome.sub is not None:
                obj.sub_nodes[outcome.sub] = outcome.node
            else:
                obj.node = outcome.node
        for origin, sub, compound in result.putbacks:
            self.pagevec.append((origin, sub or 0))
            if compound or len(self.pagevec) >= PAGEVEC_SIZE:
                self.pagevec.clear()  # __pagevec_lru_add(): on the LRU now
        self.release_isolation()

    def new_call(self) -> None:
        """migrate_prep(): lru_add_drain_all() at the start of a syscall."""
        self.pagevec.clear()

    def in_pagevec(self, index: int, sub: int = 0) -> bool:
        return (index, sub) in self.pagevec

    def release_isolation(self) -> None:
        for obj in self.objects:
            obj.isolated = False
            obj.isolated_subs.clear()

    def set_state(self, indices: list[int], **state) -> None:
        """New states for pages; a ``node`` means the address now has a new
        page there (a copy-on-write), whole."""
        for index in indices:
            obj = self.objects[index]
            obj.page = obj.page.with_(**state)
            if "node" in state:
                obj.node = state["node"]
                obj.sub_nodes = None

    def placement(self) -> list[dict]:
        out = []
        for index, obj in enumerate(self.objects):
            item = {"page": index, "kind": obj.page.kind.value}
            if obj.split:
                item["split"] = True
                item["nodes"] = dict(sorted(Counter(obj.sub_nodes).items()))
            else:
                item["node"] = obj.node
            out.append(item)
        return out
