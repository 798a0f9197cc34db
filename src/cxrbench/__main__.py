"""`python -m cxrbench` (and `torchrun ... -m cxrbench extract`): the `cxrbench` command."""

from cxrbench.cli import main

main()
