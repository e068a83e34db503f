"""Allow `python -m pqlhub`."""

from pqlhub.cli import main

main()
