"""Write a `nedr bench` result: report.json (machines), report.md (people), two plots and an image grid.

Every file is written to a temporary name and renamed, so an interrupted run never leaves a
half-written report next to a complete one.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np

from nedr.fileio import atomic_write, write_text_atomic
from nedr.runtime.frames import to_uint8

from .suite import BenchResult

JSON_NAME, MD_NAME = "report.json", "report.md"
LATENCY_PLOT, TRADEOFF_PLOT, GRID_NAME = "latency_vs_resolution.png", "accuracy_vs_speed.png", "grid.png"
GRID_TILE_WIDTH = 320


def _num(value, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    return f"{value:.{digits}f}{unit}"


def _hw(size) -> str:
    return f"{size[0]}×{size[1]}"


# --------------------------------------------------------------------------- markdown

def _rate(row: dict) -> str:
    if row.get("gmac_per_s") is None:
        return "—"
    share = row.get("fraction_of_peak")
    return _num(row["gmac_per_s"], 1) + (f" ({100 * share:.0f} %)" if share is not None else "")


def _peaks(machine: dict) -> str:
    peaks = machine.get("conv_peak") or {}
    return "; ".join(f"{dev}: {_num(p['gmac_s'], 1)} GMAC/s ({p['what']})" for dev, p in peaks.items()) or "not measured"


def _speed_table(report: dict) -> list[str]:
    labels = {c["key"]: c["label"] for c in report["candidates"]}
    lines = ["| size | backend | mode | p50 ms | p95 ms | p99 ms | frames/s | × PyTorch FP32 | max abs Δ | GMAC | GMAC/s (% of peak) "
             "| peak RSS MiB | peak CUDA MiB |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in report["speed"]:
        mode = "full" if row["mode"] == "full" else f"fast (net {_hw(row['network_input'])})"
        if row["padded_to"] != row["network_input"]:
            mode += f", padded {_hw(row['padded_to'])}"
        lines.append(f"| {_hw(row['size'])} | {labels.get(row['key'], row['key'])} | {mode} | {_num(row['p50_ms'])} | "
                     f"{_num(row['p95_ms'])} | {_num(row['p99_ms'])} | {_num(row['fps'], 2)} | "
                     f"×{_num(row['speedup_vs_reference'], 2)} | {row['max_abs_vs_reference']:.1e} | "
                     f"{_num(row.get('gmac_per_frame'), 1)} | {_rate(row)} | "
                     f"{_num(row.get('peak_rss_mib'), 0)} | {_num(row.get('peak_gpu_mib'), 0)} |")
    return lines


def _accuracy_table(report: dict) -> list[str]:
    acc = report["accuracy"]
    lines = [f"On {len(acc['frames'])} real frames at {_hw(acc['size'])} ({', '.join(acc['frames'])}); "
             f"network output J against PyTorch FP32. PSNR over all frames (— = bit-identical).", "",
             "| backend | max abs Δ | mean abs Δ | PSNR dB | worst frame dB | SSIM |", "|---|---:|---:|---:|---:|---:|"]
    for row in acc["rows"]:
        lines.append(f"| {row['label']} | {row['max_abs']:.2e} | {row['mean_abs']:.2e} | {_num(row['psnr_db'], 2)} | "
                     f"{_num(row['psnr_min_db'], 2)} | {row['ssim']:.6f} |")
    return lines


def quality_table(quality: dict) -> list[str]:
    """Markdown rows: one per method, a PSNR/SSIM column pair per dataset that ran."""
    sets = [name for name in ("sots", "synthetic") if "rows" in quality.get(name, {})]
    head = " | ".join(f"{name} ({quality[name]['count']}) PSNR dB | SSIM" for name in sets)
    lines = [f"| method | {head} |", "|---|" + "---:|---:|" * len(sets)]
    keys = [r["key"] for r in quality[sets[0]]["rows"]] if sets else []
    for key in keys:
        cells = []
        label = key
        for name in sets:
            row = next(r for r in quality[name]["rows"] if r["key"] == key)
            label = row["label"]
            cells.append(f"{row['psnr']:.2f} | {row['ssim']:.4f}")
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return lines


def _prepare_table(report: dict) -> list[str]:
    lines = ["| backend | model file | made in s | load s | resident after load MiB |", "|---|---|---:|---:|---:|"]
    for c in report["candidates"]:
        made = "reused" if c["prepare_reused"] else _num(c["prepare_s"])
        memory = c.get("memory") or {}
        loaded = memory.get("loaded_mib")
        lines.append(f"| {c['label']} | {Path(c['model_file']).name if c['model_file'] else 'checkpoint'} | {made} | "
                     f"{_num(c['load_s'], 2)} | {_num(loaded, 0)} |")
    return lines


def render_markdown(report: dict, plots: list[str], grid: str | None) -> str:
    m, v, s = report["machine"], report["versions"], report["settings"]
    cpu = m["cpu"]
    gpu = m["gpu"]["name"] if m.get("gpu") else "none"
    lines = ["# nedr bench", "",
             f"{report['created']} · `{' '.join(report['command']) or 'nedr bench'}` · {report['seconds']:.0f} s", "",
             f"- **CPU**: {cpu.get('model')} ({cpu.get('cores')} cores; INT8 flags {', '.join(cpu.get('int8_flags', [])) or '—'}; "
             f"VNNI {'yes' if cpu.get('vnni') else 'no'}); {m['threads']} threads for PyTorch and ONNX Runtime",
             f"- **GPU**: {gpu}",
             f"- **Load average** at start {m.get('load_avg_at_start')}, at end {m.get('load_avg_at_end')}",
             "- **Versions**: " + ", ".join(f"{k} {val}" for k, val in v.items()),
             f"- **Model**: {report['model']['checkpoint']}",
             f"- **Dense-conv peak** (the ceiling for the GMAC/s column): {_peaks(m)}", "",
             "Speed ratios compare backends timed round-robin in the same run; warm-up excluded; "
             f"at least {s['min_iters']} timed calls each (more while under {s['min_seconds']} s per backend). "
             "Full mode times the network call on a padded float frame; fast mode times the whole frame "
             "(downscale, network, guided upsampling) and is labelled.", ""]
    if report["not_run"]:
        lines += ["## Not run", ""] + [f"- **{n['what']}**: {n['reason']}" for n in report["not_run"]] + [""]
    lines += ["## Speed", ""] + _speed_table(report) + [""]
    lines += [f"- {note}" for note in report.get("notes", [])] + ([""] if report.get("notes") else [])
    lines += ["## Accuracy against the PyTorch original", ""] + _accuracy_table(report) + [""]
    q = report["quality"]
    lines += ["## Dehazing quality against ground truth", "", q["metrics"] + ".", ""] + quality_table(q)
    if "skipped" in q.get("sots", {}):
        lines += ["", f"SOTS-indoor: not run ({q['sots']['skipped']})."]
    lines += ["", "## Preparation", ""] + _prepare_table(report) + [""]
    if plots or grid:
        lines += ["## Figures", ""] + [f"![{p}]({p})" for p in plots] + ([f"![{grid}]({grid})"] if grid else []) + [""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- figures

def _plots(report: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {c["key"]: c["label"] for c in report["candidates"]}
    written = []

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, label in labels.items():
        rows = [r for r in report["speed"] if r["key"] == key]
        mp = [r["size"][0] * r["size"][1] / 1e6 for r in rows]
        ax.plot(mp, [r["p50_ms"] for r in rows], "-", label=label)
        for x, r in zip(mp, rows):
            ax.plot([x], [r["p50_ms"]], "o" if r["mode"] == "full" else "s", mfc="none" if r["mode"] == "fast" else None,
                    color=ax.lines[-1].get_color())
    ax.set(xscale="log", yscale="log", xlabel="frame megapixels (hollow squares: fast mode)", ylabel="p50 latency (ms)",
           title="Latency vs resolution")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(out / LATENCY_PLOT, lambda p: fig.savefig(p, dpi=110, format="png"), hidden=True)
    plt.close(fig)
    written.append(LATENCY_PLOT)

    acc = {r["key"]: r for r in report["accuracy"]["rows"]}
    full = [r for r in report["speed"] if r["mode"] == "full"]
    if full:
        at = max((tuple(r["size"]) for r in full), key=lambda hw: (list(hw) == report["accuracy"]["size"], hw[0] * hw[1]))
        rows = [r for r in full if tuple(r["size"]) == at]
        finite = [acc[r["key"]]["psnr_db"] for r in rows if acc.get(r["key"], {}).get("psnr_db") is not None]
        top = (max(finite) if finite else 60.0) + 10
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for r in rows:
            psnr = acc.get(r["key"], {}).get("psnr_db")
            y = top if psnr is None else psnr
            ax.scatter([r["fps"]], [y])
            ax.annotate(labels.get(r["key"], r["key"]) + (" (reference / identical)" if psnr is None else ""),
                        (r["fps"], y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set(xlabel=f"frames/s at {_hw(at)}", ylabel="PSNR vs PyTorch FP32 (dB)", title="Accuracy vs speed")
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        atomic_write(out / TRADEOFF_PLOT, lambda p: fig.savefig(p, dpi=110, format="png"), hidden=True)
        plt.close(fig)
        written.append(TRADEOFF_PLOT)
    return written


def _tile(image: np.ndarray, label: str) -> np.ndarray:
    h, w = image.shape[:2]
    scale = GRID_TILE_WIDTH / w
    tile = cv2.resize(image, (GRID_TILE_WIDTH, max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    tile = np.ascontiguousarray(tile)
    cv2.rectangle(tile, (0, 0), (GRID_TILE_WIDTH, 18), (0, 0, 0), -1)
    cv2.putText(tile, label, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def _gain(diff: np.ndarray) -> float:
    """A power of ten that lifts the 99.9th-percentile difference to at least a tenth of full scale."""
    level = max(float(np.percentile(diff, 99.9)), 1e-9)
    return max(1.0, 10.0 ** math.floor(math.log10(1.0 / level)))


def image_grid(result: BenchResult, frames: int = 2) -> np.ndarray:
    """Rows of hazy | PyTorch | each backend, each followed by a row of |backend − PyTorch|, amplified
    by a power of ten per backend (written on the tile) so FP32's 1e-6 shows as well as INT8's 1e-2."""
    labels = {c["key"]: c["label"] for c in result.report["candidates"]}
    keys = list(result.outputs)
    ref_key, others = keys[0], keys[1:]
    rows = []
    for i in range(min(frames, len(result.frames))):
        name, hazy = result.frames[i]
        top = [_tile(hazy, f"hazy {name}"), _tile(to_uint8(result.outputs[ref_key][i]), labels[ref_key])]
        top += [_tile(to_uint8(result.outputs[k][i]), labels[k]) for k in others]
        rows.append(np.hstack(top))
        if others:
            blank = np.zeros_like(top[0])
            bottom = [blank, _tile(np.zeros_like(hazy), "amplified |backend - PyTorch|")]
            for k in others:
                diff = np.abs(result.outputs[k][i] - result.outputs[ref_key][i])
                gain = _gain(diff)
                bottom.append(_tile(to_uint8(np.minimum(diff * gain, 1.0)), f"|{labels[k]} - ref| x{gain:g}"))
            rows.append(np.hstack(bottom))
    return np.vstack(rows)


def write_report(result: BenchResult, out: str | Path) -> dict[str, Path]:
    """Write every report file into `out` (created if needed); returns their paths by kind."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    notes = list(result.report.get("notes", []))
    try:
        plots = _plots(result.report, out)
    except ImportError:  # a bare box (e.g. a lent GPU machine) without matplotlib still gets its numbers
        plots = []
        notes.append("plots not drawn: matplotlib is not installed (pip install matplotlib)")
    grid = None
    if result.frames:
        image = cv2.cvtColor(image_grid(result), cv2.COLOR_RGB2BGR)

        def save(p: Path) -> None:
            if not cv2.imwrite(str(p), image):
                raise OSError(f"cannot write {p}")

        atomic_write(out / GRID_NAME, save, hidden=True)
        grid = GRID_NAME
    report = dict(result.report, notes=notes, files={"markdown": MD_NAME, "plots": plots, "grid": grid})
    write_text_atomic(out / JSON_NAME, json.dumps(report, indent=1, allow_nan=False), hidden=True)
    write_text_atomic(out / MD_NAME, render_markdown(report, plots, grid), hidden=True)
    paths = {"json": out / JSON_NAME, "markdown": out / MD_NAME, "plots": [out / p for p in plots]}
    if grid:
        paths["grid"] = out / grid
    return paths
