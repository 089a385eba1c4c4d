"""LAVA: the run's plan scenarios as jobs for a LAVA lab (``jobs``), submitted and awaited with lavacli (``lab``), their consoles replayed into a run directory (``collect``, ``transcript``)."""
