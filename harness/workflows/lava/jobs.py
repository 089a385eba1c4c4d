"""LAVA job definitions for a run's scenarios (``harness lava jobs``).

For each arch of a local run directory and each scenario that can run as a
job (harness/lava/transcript.py), a directory with:

- ``job.yaml``: LAVA's QEMU device type, the run's own kernel, a ramdisk
  made of the run's guest image plus the scenario's script and inputs
  (``/harness/lava``), the machine the local run gives the scenario (memory,
  CPUs, NUMA nodes, balloon, scratch disk; TCG), the kernel command line
  with ``harness.lava`` (the image's init then gives LAVA a console shell),
  and a test action that runs the script;
- ``commands.json``: the transcript, which ``harness lava collect`` replays;
- ``initramfs.cpio.gz`` and, when the scenario needs one, ``disk.img``.

Files are referenced as file:// URLs: a worker on another host needs them
served (``--url-base``)."""
from __future__ import annotations

import base64
import gzip
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import yaml

from harness.arches import arch as lookup_arch
from harness.errors import UserError
from harness.image import cpio
from harness.kernel import kconfig
from harness.scenarios import Target, scenarios_for_run
from harness.vm.cmdline import disk_args, kernel_words, numa_args, smp_args
from harness.vm.machine import MachineRequest
from harness.workflows.lava import transcript as tr

#: The shell prompt the image's init gives a LAVA job (guest/init.j2).
PROMPT = "harness-lava# "
#: LAVA's name for each arch in its qemu device type.
LAVA_ARCH = {"x86_64": "x86_64", "arm64": "arm64", "arm": "arm"}
#: The local run's guest CPUs.
CPUS = MachineRequest.cpus


@dataclass(frozen=True)
class JobFiles:
    arch: str
    scenario: str
    directory: Path
    job: Path


def run_targets(run_dir: Path) -> dict:
    """{arch: (target doc, kernel.config path)} of a local run directory."""
    try:
        doc = json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
        raise UserError(f"{run_dir} has no readable results.json: is it a run directory?",
                        hint="give a directory `harness run` wrote (its path is printed as [run] ...)") from None
    out = {}
    for arch, arch_doc in doc.get("arches", {}).items():
        target = arch_doc.get("target", {})
        if "kernel" not in target or "initrd" not in target:
            raise UserError(f"{run_dir}: the {arch} part of the run has no kernel or image (did its build fail?)")
        out[arch] = (target, run_dir / arch / "kernel.config", sorted(arch_doc.get("scenarios", {})))
    if not out:
        raise UserError(f"{run_dir} ran no arch: nothing to make LAVA jobs of")
    return out


def job_yaml(arch: str, scenario, kernel_url: str, ramdisk_url: str, disk: Optional[Path], numa_nodes: int,
             name: str) -> dict:
    """The LAVA job definition (a dict: yaml.safe_dump writes it)."""
    the_arch = lookup_arch(arch)
    memory = scenario.memory_mb
    cmdline = " ".join(kernel_words(the_arch, (*scenario.append, "harness.lava")))
    # TCG, and the local run's machine (LAVA's qemu template adds only -m,
    # -nographic, a user network and, for arm, -cpu/-machine from the context)
    memoryless = getattr(scenario, "memoryless_nodes", 0) if numa_nodes > 1 else 0
    cpus = CPUS + memoryless
    extra = ["-accel", "tcg,thread=multi", *smp_args(cpus), "-no-reboot"]
    if arch == "x86_64":
        extra += ["-machine", the_arch.machine, "-cpu", the_arch.cpu]
    extra += numa_args(memory, cpus, numa_nodes, memoryless)
    extra += ["-device", "virtio-balloon-pci,id=balloon0"]
    if disk is not None:
        extra += disk_args(disk)
    timeout_min = int(getattr(scenario, "timeout", 600)) // 60 + 10
    return {
        "device_type": "qemu",
        "job_name": name,
        "visibility": "public",
        "priority": "medium",
        "timeouts": {"job": {"minutes": timeout_min + 15}, "action": {"minutes": timeout_min},
                     "connection": {"minutes": 2}},
        "context": dict({"arch": LAVA_ARCH[arch], "memory": memory, "no_kvm": True, "console_device": the_arch.console,
                         "extra_options": extra},
                        **({"machine": the_arch.machine, "cpu": the_arch.cpu} if arch != "x86_64" else {})),
        "actions": [
            {"deploy": {"to": "tmpfs", "os": "oe", "timeout": {"minutes": 5}, "images": {
                "kernel": {"image_arg": f'-kernel {{kernel}} -append "{cmdline}"', "url": kernel_url},
                # LAVA unpacks the archive to add its test overlay, and packs it again
                "ramdisk": {"image_arg": "-initrd {ramdisk}", "url": ramdisk_url, "compression": "gz",
                            "format": "cpio.newc", "overlays": {"lava": True}},
            }}},
            {"boot": {"method": "qemu", "media": "tmpfs", "timeout": {"minutes": 10}, "prompts": [PROMPT]}},
            {"test": {"timeout": {"minutes": timeout_min}, "definitions": [{
                "from": "inline", "name": "harness", "path": "inline/harness.yaml",
                "repository": {
                    "metadata": {"format": "Lava-Test Test Definition 1.0", "name": "harness",
                                 "description": f"harness scenario {scenario.name}: its guest commands"},
                    "run": {"steps": [f"sh {tr.GUEST_DIR}/run.sh",
                                      f"lava-test-case {scenario.name} --result pass"]},
                },
            }]}},
        ],
    }


def image_entries(base: bytes) -> list[cpio.Entry]:
    """The run's guest image (a gzipped newc archive), which must have the
    LAVA mode of guest/init.j2."""
    entries = cpio.read(gzip.decompress(base))
    init = next((e for e in entries if e.path == "init"), None)
    if init is None or b"harness.lava" not in init.data:
        raise UserError("the run's guest image has no LAVA mode (its /init predates it): a LAVA job would wait for a shell "
                        "that never comes", hint="make a new run with this harness (its image has it) and use that")
    return entries


def ramdisk(entries: Sequence[cpio.Entry], commands: Sequence[tr.Command]) -> bytes:
    """The image with the scenario's script and inputs added, as one
    archive (LAVA unpacks and repacks it to add its own test overlay)."""
    have = {e.path for e in entries}
    extra = [cpio.Entry.dir(d) for d in ("harness", "harness/lava") if d not in have]
    extra.append(cpio.Entry.file("harness/lava/run.sh", tr.guest_script(commands), perm=0o755))
    extra += [cpio.Entry.file(f"harness/lava/{tr.stdin_name(c)}", c.stdin) for c in commands if c.stdin is not None]
    return gzip.compress(cpio.archive(list(entries) + extra), 6, mtime=0)


def make_jobs(run_dir: Path, out_dir: Path, scenarios: Sequence[str] = (), arches: Sequence[str] = (),
              url_base: Optional[str] = None) -> tuple[list[JobFiles], list[str]]:
    """Write the jobs; returns them and the scenarios left out, with why."""
    run_dir, out_dir = Path(run_dir).resolve(), Path(out_dir).resolve()
    known = scenarios_for_run(run_dir)
    jobs, left_out = [], []

    def url(path: Path) -> str:
        return f"{url_base.rstrip('/')}/{path.relative_to(out_dir)}" if url_base else path.as_uri()

    for arch, (target_doc, config_path, ran) in run_targets(run_dir).items():
        if arches and arch not in arches:
            continue
        if arch not in LAVA_ARCH:
            left_out.append(f"{arch}: LAVA's qemu device type has no {arch}")
            continue
        config = kconfig.parse_dotconfig(config_path.read_text()) if config_path.exists() else {}
        target = Target.from_dict(target_doc, config)
        entries = image_entries(Path(target_doc["initrd"]).read_bytes())
        for name in scenarios or ran:
            if name not in known:
                raise UserError(f"unknown scenario {name!r}", hint="harness list shows the scenarios")
            scenario = known[name]
            skip = scenario.skip_reason(target)
            if skip:
                left_out.append(f"{arch} {name}: skipped ({skip})")
                continue
            try:
                commands = tr.transcribe(scenario, target)
            except tr.NotTranscribable as exc:
                left_out.append(f"{arch} {name}: {exc.message}")
                continue
            directory = out_dir / f"{arch}-{name}"
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "initramfs.cpio.gz").write_bytes(ramdisk(entries, commands))
            disk = None
            if scenario.disk_mb:
                disk = directory / "disk.img"
                with open(disk, "wb") as raw:
                    raw.truncate(scenario.disk_mb << 20)
            kernel = Path(target_doc["kernel"])
            if url_base:  # the kernel goes beside the job, to be served with it
                shutil.copyfile(kernel, directory / "kernel")
                kernel = directory / "kernel"
            job = job_yaml(arch, scenario, url(kernel), url(directory / "initramfs.cpio.gz"), disk, target.numa_nodes,
                           f"harness {target_doc.get('model', '')} {arch} {name}")
            (directory / "job.yaml").write_text(yaml.safe_dump(job, sort_keys=False, width=1000))
            (directory / "commands.json").write_text(json.dumps({
                "arch": arch, "scenario": name, "run": str(run_dir),
                "commands": [{"command": c.command, "timeout": c.timeout,
                              "stdin": base64.b64encode(c.stdin).decode() if c.stdin is not None else None} for c in commands],
            }, indent=1) + "\n")
            jobs.append(JobFiles(arch, name, directory, directory / "job.yaml"))
    if not jobs:
        raise UserError("no scenario of the run can run as a LAVA job: " + "; ".join(left_out[:4]),
                        hint="plan scenarios (harness list --plans) run as LAVA jobs; give a run that has some")
    (out_dir / "jobs.json").write_text(json.dumps({"run": str(run_dir), "jobs": [
        {"arch": j.arch, "scenario": j.scenario, "directory": j.directory.name} for j in jobs], "left_out": left_out}, indent=1) + "\n")
    return jobs, left_out


def load_commands(directory: Path) -> tuple[dict, list[tr.Command]]:
    doc = json.loads((directory / "commands.json").read_text())
    commands = [tr.Command(i, c["command"], float(c["timeout"]), base64.b64decode(c["stdin"]) if c["stdin"] is not None else None)
                for i, c in enumerate(doc["commands"])]
    return doc, commands
