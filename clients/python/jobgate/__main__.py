"""python3 -m jobgate: the console command (jobgate.cli)."""
import sys

from .cli import main

sys.exit(main())
