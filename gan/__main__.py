"""`python -m gan ...` (also what `torchrun -m gan train ...` runs on each process)."""
import sys

from .cli import main

sys.exit(main())
