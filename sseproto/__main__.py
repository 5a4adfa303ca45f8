"""``python -m sseproto``: the command line."""

from ._cli import run

run()
