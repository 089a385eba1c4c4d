"""The subcommands, by area: each builds a request from its options and
calls its stage (``model``: the model and plans offline; ``build``: deps,
sources, build, image, mutants; ``guest``: boot and shell; ``run``: run,
check, report; ``workflows``: compare, bisect, lava).  ``ADDERS`` adds
them to the parser in the order ``harness --help`` lists them."""
from __future__ import annotations

from harness.commands import build, guest, model, run, workflows

ADDERS = [*model.ADDERS, *build.ADDERS, *guest.ADDERS, *run.ADDERS, *workflows.ADDERS]
