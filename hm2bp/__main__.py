"""`python -m hm2bp ...`: the same as the `hm2bp` console script."""

from hm2bp.cli import main

main()
