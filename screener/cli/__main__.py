"""python -m screener.cli: the `screener` command."""
from . import main

main()
