"""Dehaze images and folders of images (no input: a bundled sample photo with synthetic haze)."""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
from tqdm import tqdm

from .common import add_device_option, add_model_options, load_model

HELP = "dehaze images"
DEFAULT_OUT = Path("nedr-output")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="image files or folders (default: bundled sample)")
    parser.add_argument("-o", "--output", default=None,
                        help=f"output folder, or a file name for a single input (default: ./{DEFAULT_OUT})")
    add_model_options(parser)
    add_device_option(parser)
    parser.set_defaults(handler=run)


def _write(path: Path, rgb) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise PermissionError(f"cannot write {path}")


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
    for name, img in (("sample_hazy.png", hazy), ("sample_dehazed.png", out), ("sample_clean.png", clean)):
        _write(out_dir / name, img)
    print(f"sample (skimage coffee + synthetic haze): PSNR hazy {psnr(hazy, clean):.2f} dB -> "
          f"dehazed {psnr(out, clean):.2f} dB; wrote {out_dir}/sample_*.png")


def run(args: argparse.Namespace) -> int:
    from nedr.model import dehaze
    from nedr.model.imageio import read_image

    model = load_model(args)
    files = _expand(args.inputs)
    if not files:
        run_sample(model, Path(args.output or DEFAULT_OUT))
        return 0
    single_file = len(files) == 1 and args.output and Path(args.output).suffix
    out_dir = Path(args.output or DEFAULT_OUT)
    for path in tqdm(files, desc="dehaze", unit="img", disable=len(files) < 2):
        result = dehaze(model, read_image(path))
        _write(out_dir if single_file else out_dir / f"{path.stem}_dehazed.png", result)
    print(f"wrote {len(files)} image(s) to {out_dir}")
    return 0
