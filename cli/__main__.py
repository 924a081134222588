"""`python -m cli`: the same as the `ferry` console script."""

from cli.main import main

main()
