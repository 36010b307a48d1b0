"""`python -m tools.demo`: serve the demo page (tools/demo/server.py)."""

import sys

from tools.demo.server import main

if __name__ == "__main__":
    sys.exit(main())
