"""`python -m pycnn train|info`: see pycnn/cli.py."""
import sys

from .cli import main

sys.exit(main())
