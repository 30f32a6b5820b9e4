"""`python -m qtoolkit.cli`, the same as `qtool`."""

from qtoolkit.cli import main

main()
