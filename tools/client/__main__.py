"""`python -m tools.client`: the command line (tools/client/cli.py)."""

import sys

from tools.client.cli import main

sys.exit(main())
