"""``python -m bench.cli``: the ``accelbench`` command."""

from bench.cli import main

main()
