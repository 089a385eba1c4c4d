"""The reference model of Linux page migration (v5.0, with 5.10 differences).

Pure functions only: no I/O, no global state.  Entry points:

* ``simulate(scenario_dict)`` -> list of ``Prediction`` (one per call step);
* ``migrate_pages(entries, env)`` for a bare call;
* the caller models in ``syscalls`` (move_pages, mbind, migrate_pages(2),
  compaction, CMA, NUMA balancing, soft offline, memory offline).
"""
from harness.model.callers import CALLERS, Caller, caller
from harness.model.constants import Errno, MigrateMode, MigrateReason, errno_name
from harness.model.kernels import KERNELS, KernelRules, kernel
from harness.model.migrate import CallResult, MigrateEvent, migrate_pages
from harness.model.page import Page, PageKind, make_page, parse_page_spec
from harness.model.prediction import Prediction
from harness.model.scenario import load_yaml_text, simulate

__all__ = [
    "CALLERS", "Caller", "caller", "Errno", "MigrateMode", "MigrateReason", "errno_name",
    "KERNELS", "KernelRules", "kernel", "CallResult", "MigrateEvent", "migrate_pages",
    "Page", "PageKind", "make_page", "parse_page_spec", "Prediction", "load_yaml_text", "simulate",
]
