"""`python -m graftwork.cli …` (what `graft compare` starts for each method)."""

from graftwork.cli import main

main()
