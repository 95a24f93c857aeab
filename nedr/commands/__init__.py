"""CLI subcommands; each module has `HELP`, `configure(parser)` (which sets the handler) and `run(args)`."""
from . import build, dehaze, evaluate, export, inspect, train

COMMANDS = {"dehaze": dehaze, "train": train, "eval": evaluate, "export": export, "build": build, "inspect": inspect}
