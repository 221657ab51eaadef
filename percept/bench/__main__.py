"""`python -m percept.bench`: the same command as `percept bench`."""

from percept.bench.command import main

main()
