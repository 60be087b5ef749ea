"""`python -m model train|evaluate|stylize|validate ...`: the trainer image's entry point."""

from __future__ import annotations

import sys

from ganops.model.cli import main

if __name__ == "__main__":
    sys.exit(main())
