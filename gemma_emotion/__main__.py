"""Entry point for `python -m gemma_emotion`."""

import sys

from gemma_emotion.cli import main

sys.exit(main())
