"""The CLI's two consoles: `out` for what a command answers, `err` for messages to the person
running it."""

import sys

from rich.console import Console

# In a pipe a table keeps its natural width instead of being squeezed into 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 400)
err = Console(stderr=True, highlight=False, soft_wrap=True)
