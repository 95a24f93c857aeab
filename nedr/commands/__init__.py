"""CLI subcommands; each module has `HELP`, `configure(parser)` (which sets the handler) and `run(args)`."""
from . import bench, build, dehaze, evaluate, export, inspect, quantize, run, train

COMMANDS = {"dehaze": dehaze, "train": train, "eval": evaluate, "export": export, "quantize": quantize, "build": build, "run": run, "inspect": inspect,
            "bench": bench}
