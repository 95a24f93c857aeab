"""Dehaze images and folders of images (no input: a bundled sample photo with synthetic haze).

Every output path is checked before the model loads (never the input file itself, a folder that
can be created), each image is written under a hidden temporary name and renamed, and an image
that cannot be read or is too small is skipped and counted: the run goes on, says which files
failed, and exits non-zero at the end, as `nedr run` does for an image folder.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
from tqdm import tqdm

from nedr.errors import UserError
from nedr.fileio import atomic_write

from .common import add_device_option, add_model_options, load_model

HELP = "dehaze images"
DEFAULT_OUT = Path("nedr-output")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="image files or folders (default: bundled sample)")
    parser.add_argument("-o", "--output", default=None,
                        help=f"output folder, or a file name for a single input (default: ./{DEFAULT_OUT})")
    parser.add_argument("--full-res", action="store_true",
                        help="run the network at full size even on large photos (default: above a 768 px long side "
                             "it runs at 768 px and the result is upsampled guided by the photo; full size needs "
                             "~0.8 GB of RAM per megapixel and drifts in colour beyond ~2 MP)")
    add_model_options(parser)
    add_device_option(parser)
    parser.set_defaults(handler=run)


def _prepare_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"cannot create the output folder {folder}: a part of that path is a file") from None
    except OSError as exc:
        raise UserError(f"cannot create the output folder {folder}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"cannot write into {folder}: no write permission")


def _write(path: Path, rgb) -> None:
    """Write under a hidden temporary name, then rename: the final name only holds whole files."""
    def write(tmp: Path) -> None:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise UserError(f"cannot write {path} (OpenCV has no writer for {path.suffix!r} or the disk is full)")

    atomic_write(path, write, hidden=True)


def _plan(files: list[Path], output: str | None) -> list[tuple[Path, Path]]:
    """(input, output) per image; refuses outputs that would replace an input."""
    single_file = len(files) == 1 and output and Path(output).suffix
    out_dir = Path(output or DEFAULT_OUT)
    plan = [(f, out_dir if single_file else out_dir / f"{f.stem}_dehazed.png") for f in files]
    inputs = {f.resolve() for f in files}
    for src, dst in plan:
        if dst.resolve() in inputs:
            raise UserError(f"refusing to overwrite the input {src} with its dehazed result; give another -o")
        if dst.is_dir():
            raise UserError(f"{dst} is a folder; give a file name such as {dst / 'out.png'}")
    for folder in dict.fromkeys(dst.parent for _, dst in plan):
        _prepare_folder(folder)
    return plan


def _expand(inputs: list[str]) -> list[Path]:
    from nedr.model.imageio import DataError, list_images

    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += list_images(item)
        elif item.is_file():
            files.append(item)
        else:
            raise DataError(f"{item}: no such file or folder")
    return files


def run_sample(model, out_dir: Path) -> None:
    """Dehaze the bundled sample and report PSNR against its clean original."""
    from nedr.model import dehaze
    from nedr.model.metrics import psnr, to_uint8
    from nedr.model.samples import demo_hazy

    sample = demo_hazy()
    hazy, clean = to_uint8(sample.hazy), to_uint8(sample.clean)
    out = dehaze(model, hazy)
    _prepare_folder(out_dir)
    for name, img in (("sample_hazy.png", hazy), ("sample_dehazed.png", out), ("sample_clean.png", clean)):
        _write(out_dir / name, img)
    print(f"sample (skimage coffee + synthetic haze): PSNR hazy {psnr(hazy, clean):.2f} dB -> "
          f"dehazed {psnr(out, clean):.2f} dB; wrote {out_dir}/sample_*.png")


def _read(path: Path):
    """The image as uint8 RGB, or DataError naming the file (unreadable, or below dehaze()'s minimum)."""
    from nedr.model.imageio import DataError, read_image
    from nedr.model.inference import MIN_IMAGE_SIZE

    image = read_image(path)
    if min(image.shape[:2]) < MIN_IMAGE_SIZE:
        h, w = image.shape[:2]
        raise DataError(f"{path}: image is {w}×{h}, smaller than {MIN_IMAGE_SIZE}×{MIN_IMAGE_SIZE}")
    return image


def run(args: argparse.Namespace) -> int:
    from nedr.model import dehaze
    from nedr.model.imageio import DataError
    from nedr.model.inference import LARGE_SIDE, network_size_for

    files = _expand(args.inputs)
    plan = _plan(files, args.output) if files else []
    if len(plan) == 1:
        _read(plan[0][0])  # one input: a bad file is the error, before the model loads
    model = load_model(args)
    if not files:
        run_sample(model, Path(args.output or DEFAULT_OUT))
        return 0
    failed = []
    bar = tqdm(plan, desc="dehaze", unit="img", disable=len(plan) < 2)
    for src, dst in bar:
        try:
            image = _read(src)
        except DataError as exc:
            failed.append(src)
            bar.write(f"nedr: skipped: {exc}", file=sys.stderr)
            continue
        h, w = image.shape[:2]
        small = None if args.full_res else network_size_for(h, w)
        if small:
            bar.write(f"{src.name}: {w}×{h}: network at {small[1]}×{small[0]}, guided upsampling to full size "
                      "(--full-res to run it at full size)")
        _write(dst, dehaze(model, image, max_side=None if args.full_res else LARGE_SIDE))
    done = len(plan) - len(failed)
    where = plan[0][1] if len(plan) == 1 else plan[0][1].parent
    print(f"wrote {done} image(s) to {where}")
    if failed:
        raise UserError(f"{len(failed)} of {len(plan)} image(s) could not be read and were skipped "
                        f"(first: {failed[0]})")
    return 0
