"""The package map of docs/architecture.md, enforced: every import (at
module level or inside a function) goes to the same package or to a layer
earlier in the flow, and no module imports itself back through others."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "harness"

#: Layers in flow order; a module may import its own layer's package and
#: anything of an earlier layer, never a later one.  Two packages of the
#: same layer do not import each other.
LAYERS = (
    ("errors", "result"),        # shared types
    ("arches",),                 # data: one frozen dataclass per arch
    ("host",),                   # processes, tools, packages, cache, run directories, progress
    ("kernel",),                 # source, patches, work copy, kconfig, build, compat, kselftest
    ("image",),                  # the guest's initramfs
    ("vm",),                     # QEMU, QMP, console, SSH
    ("model", "observe", "perf"),  # pure: the reference model; parsers of what the guest shows; metric statistics
    ("check",),                  # observed against predicted
    ("scenarios",),              # what runs in the guest and how it is checked
    ("report",),                 # results as JSON, JUnit, KTAP, text, HTML, KCIDB
    ("pipeline",),               # the run
    ("workflows",),              # series, bisect, compare, mutation, LAVA
    ("commands",),               # the subcommands: requests built from options
    ("cli",),                    # the parser and the exit codes
    ("__main__",),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every harness module the file imports, wherever the import sits."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("harness.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
            base = node.module
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                # "from harness.kernel import kconfig" imports the module harness.kernel.kconfig
                out.add(candidate if _is_module(candidate) else base)
    return out


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def top(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def graph() -> dict[str, set[str]]:
    return {module_name(p): {m for m in imports(p) if m != "harness"} for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_package_has_a_layer():
    packages = {top(m) for m in graph()} - {""}
    assert packages <= set(RANK), f"packages with no layer in LAYERS (and docs/architecture.md): {sorted(packages - set(RANK))}"


def test_no_import_runs_against_the_flow():
    wrong = []
    for module, targets in graph().items():
        if not top(module):
            continue
        for target in targets:
            a, b = top(module), top(target)
            if a != b and (RANK[b] > RANK[a] or RANK[b] == RANK[a]):
                wrong.append(f"{module} imports {target} ({a} is layer {RANK[a]}, {b} layer {RANK[b]})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    modules = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(modules.get(node, ())):
            if nxt not in modules:
                continue
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]) if nxt in path else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in modules:
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("layer", [n for names in LAYERS for n in names])
def test_the_map_names_every_layer(layer):
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    assert f"`{layer}" in text, f"docs/architecture.md does not mention {layer}"


def test_every_host_command_goes_through_proc():
    """harness.host.proc echoes each command, keeps its output and runs it
    under the guardian (its process group dies with the harness): nothing
    else starts processes (QEMU is the VM layer's own, through pexpect)."""
    starters = {("subprocess", n) for n in ("run", "Popen", "call", "check_call", "check_output", "getoutput")} | {
        ("os", n) for n in ("system", "popen", "execv", "execvp", "spawnv", "posix_spawn")}
    allowed = {"harness.host.proc", "harness.host.guard"}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if module_name(path) in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and (node.value.id, node.attr) in starters):
                found.append(f"{module_name(path)}:{node.lineno} {node.value.id}.{node.attr}")
    assert not found, "\n".join(found)


def test_checking_a_plan_offline_needs_no_ssh_qemu_or_plotting_library():
    import subprocess
    import sys

    code = ("import sys, harness.scenarios.plan.scenario, harness.scenarios.plan.explain\n"
            "print(sorted(m for m in ('paramiko', 'pexpect', 'qemu.qmp', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
