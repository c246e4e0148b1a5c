"""`python -m kvmbox` is the CLI."""
import sys

from kvmbox.cli import main

sys.exit(main())
