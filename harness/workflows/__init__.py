"""Workflows built on runs: a patch series (``series``), a bisection
(``bisect``), an A/B comparison (``compare``), the mutation catalogue
(``mutation``) and LAVA jobs (``lava``)."""
