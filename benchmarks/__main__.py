"""``python -m benchmarks [--threads N] [--quick] [--json PATH] [--cases a,b] [--memory]``."""
import sys

from benchmarks.run import main

sys.exit(main())
