"""What the harness does on the host: external commands (``proc``, under
``guard``), host tools and packages (``toolchain``, ``deps``), the cache
(``cache``), run directories (``rundir``), progress on the terminal
(``progress``) and where the project's files are (``paths``)."""
