"""``python -m pycnn.bench [options]``: the same as ``python -m pycnn bench``."""
import sys

from pycnn.bench.run import main

sys.exit(main(prog="python -m pycnn.bench"))
