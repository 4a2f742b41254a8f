"""`python -m screener ...` is the `screener` command."""
from .cli import main

main()
