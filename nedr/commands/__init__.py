"""CLI subcommands; each module has `HELP`, `configure(parser)` (which sets the handler) and `run(args)`."""
from . import dehaze, evaluate, train

COMMANDS = {"dehaze": dehaze, "train": train, "eval": evaluate}
