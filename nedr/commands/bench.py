"""Benchmark every backend and precision this machine can run against the PyTorch original.

Accuracy against PyTorch FP32 on real frames, dehazing quality against ground truth (held-out
synthetic haze; SOTS-indoor pairs when found), and latency p50/p95/p99, throughput, load time and
peak memory per size, with all backends timed round-robin in one run. Writes report.json,
report.md, two plots and an image grid to -o DIR; what could not run is listed with the reason.
"""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "accuracy, quality and speed report for every backend/precision here"
DEFAULT_OUT = Path("nedr-output/bench")
SOTS_CANDIDATES = ("../shared/data", "shared/data")  # where a checkout's evaluation pairs usually sit


def _size(text: str) -> tuple[int, int]:
    from nedr.export.quantize import QuantizeError, parse_size

    try:
        h, w = parse_size(text)
    except QuantizeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if min(h, w) < 16:
        raise argparse.ArgumentTypeError(f"size {text!r} is too small (at least 16 pixels a side)")
    return h, w


def _list(choices: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        items = [t.strip().lower() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(choices)} (comma-separated)")
        return items
    return parse


def configure(parser: argparse.ArgumentParser) -> None:
    from nedr.benchmarks.candidates import BACKENDS, PRECISIONS
    from nedr.benchmarks.suite import DEFAULT_FAST_SIZE, DEFAULT_SIZES

    sizes = ",".join(f"{h}x{w}" for h, w in DEFAULT_SIZES)
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUT, metavar="DIR",
                        help=f"report folder (default: {DEFAULT_OUT})")
    parser.add_argument("--backends", type=_list(BACKENDS), default=list(BACKENDS), metavar="LIST",
                        help=f"comma-separated subset of {','.join(BACKENDS)} (default: all; PyTorch FP32 always "
                             "runs as the reference)")
    parser.add_argument("--precisions", type=_list(PRECISIONS), default=list(PRECISIONS), metavar="LIST",
                        help=f"comma-separated subset of {','.join(PRECISIONS)} (default: all)")
    parser.add_argument("--sizes", type=lambda t: [_size(s) for s in t.split(",") if s.strip()], default=None,
                        metavar="HxW,...", help=f"frame sizes, height x width (default: {sizes})")
    parser.add_argument("--fast-size", type=_size, default=None, metavar="HxW",
                        help="network input budget of fast-mode rows: large sizes whose full-resolution run would "
                             f"exceed --size-budget run at this many pixels with guided upsampling "
                             f"(default: {DEFAULT_FAST_SIZE[0]}x{DEFAULT_FAST_SIZE[1]})")
    parser.add_argument("--full-res", action="store_true", help="never switch a size to fast mode")
    parser.add_argument("--size-budget", type=float, default=None, metavar="S",
                        help="estimated seconds for one size above which it runs in fast mode (default: 120)")
    parser.add_argument("--min-seconds", type=float, default=None, metavar="S",
                        help="timed seconds per backend and size; more calls are made while under it (default: 2)")
    parser.add_argument("--min-iters", type=int, default=None, metavar="N", help="timed calls per backend and size, at least (default: 5)")
    parser.add_argument("--threads", type=int, default=0, metavar="N", help="CPU threads for PyTorch and ONNX Runtime (default: all cores)")
    parser.add_argument("--checkpoint", "-c", default=None, metavar="PATH", help="weights (default: the bundled default, nedr-s)")
    parser.add_argument("--pairs", type=Path, default=None, metavar="DIR",
                        help="paired folder (hazy/ + gt/) for the quality table (default: ../shared/data or "
                             "shared/data when present)")
    parser.add_argument("--work", type=Path, default=None, metavar="DIR",
                        help="where exported/quantized models are made and reused (default: the ONNX cache `nedr run` "
                             "uses, $NEDR_CACHE_DIR/onnx or ~/.cache/nedr/onnx)")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-backend peak-memory processes")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, few iterations, 2 images per quality set: a smoke run in a few minutes")
    parser.set_defaults(handler=run)


def find_pairs(explicit: Path | None) -> tuple[Path | None, str | None]:
    """The SOTS-style folder to score on, or None with the reason for the report."""
    from nedr.model.evaluation import find_pair_dirs
    from nedr.model.imageio import DataError

    if explicit is not None:
        find_pair_dirs(explicit)  # a bad folder the user named is an error, not a silent skip
        return explicit.resolve(), None
    for candidate in SOTS_CANDIDATES:
        root = Path(candidate)
        for folder in [root, *sorted(p for p in root.glob("*") if p.is_dir())] if root.is_dir() else []:
            try:
                find_pair_dirs(folder)
            except DataError:
                continue
            return folder.resolve(), None
    return None, f"no paired folder found at {' or '.join(SOTS_CANDIDATES)}; pass --pairs DIR"


def run(args: argparse.Namespace) -> int:
    from nedr.benchmarks.report import write_report
    from nedr.benchmarks.suite import BenchConfig, run_bench

    from nedr.errors import UserError

    from nedr.fileio import output_problem

    problem = output_problem(args.output, folder=True)  # before minutes of measuring, not after
    if problem:
        raise UserError(f"{problem}; give -o a folder for the report")
    pairs, note = find_pairs(args.pairs)
    options = dict(backends=args.backends, precisions=args.precisions, sizes=args.sizes, fast_size=args.fast_size,
                   full_res=args.full_res, size_budget_s=args.size_budget, min_seconds=args.min_seconds,
                   min_iters=args.min_iters, threads=args.threads, checkpoint=args.checkpoint, pairs=pairs,
                   pairs_note=note, work=args.work, memory=not args.no_memory, command=getattr(args, "argv", ["nedr", "bench"]))
    if args.quick:
        config = BenchConfig.quick_preset(args.output, **options)
    else:
        config = BenchConfig(out=args.output, **{k: v for k, v in options.items() if v is not None})
    result = run_bench(config)
    paths = write_report(result, args.output)
    print(summary(result.report))
    print(f"wrote {paths['markdown']} and {paths['json']}")
    return 0


def summary(report: dict) -> str:
    """A few lines for the terminal: p50 per backend at each size, and what did not run."""
    labels = {c["key"]: c["label"] for c in report["candidates"]}
    lines = []
    for size in dict.fromkeys(tuple(r["size"]) for r in report["speed"]):
        rows = [r for r in report["speed"] if tuple(r["size"]) == size]
        mode = " (fast mode)" if rows[0]["mode"] == "fast" else ""
        lines.append(f"{size[0]}x{size[1]}{mode}: " + ", ".join(
            f"{labels[r['key']]} {r['p50_ms']:.1f} ms (x{r['speedup_vs_reference']:.2f})" for r in rows))
    for row in report["accuracy"]["rows"][1:]:
        psnr = "identical" if row["psnr_db"] is None else f"{row['psnr_db']:.1f} dB"
        lines.append(f"{row['label']} vs PyTorch FP32: {psnr}, max |d| {row['max_abs']:.1e}")
    lines += [f"not run: {n['what']}: {n['reason']}" for n in report["not_run"]]
    return "\n".join(lines)
