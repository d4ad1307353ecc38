"""Gather into one ignored folder (.gpu/) everything a lent GPU machine lacks for gpu/procedure.py.

That machine has no network, Python 3.12 and PyTorch, OpenCV, NumPy, PyYAML, safetensors and
tqdm, but not PyAV or ffmpeg-python: their wheels are downloaded here (PyPI) for CPython 3.12 on
manylinux x86-64. Beside them: the photos the on-the-fly pairs are cut from, and pairs built from
real high-fps footage for validation. The working tree and the bundle travel together and must
stay under the device tool's 64 MiB; this script checks that.

    python gpu/bundle.py --photos ../shared/data/photos --real PAIRS [PAIRS ...]
    python gpu/bundle.py --photos P --real R --no-wheels --out /tmp/bundle   # tests, no network
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT_BYTES = 64 * 1024 * 1024  # what the device tool carries: working tree plus carried folders
# (distribution, import name): what gpu/procedure.py imports that the GPU image lacks.
MISSING_THERE = (("av", "av"), ("ffmpeg-python", "ffmpeg"))
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def tree_bytes(root: Path = ROOT) -> int:
    """Bytes of what the device tool sends: tracked files and untracked ones git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=root, capture_output=True, check=True).stdout.split(b"\0")
    return sum((root / name.decode()).stat().st_size for name in listed if name and (root / name.decode()).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def download_wheels(dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    for dist, _ in MISSING_THERE:
        version = metadata.version(dist)
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                   "--python-version", "3.12", "--implementation", "cp", "-d", str(dest), f"{dist}=={version}"]
        for platform in PLATFORMS:
            command += ["--platform", platform]
        subprocess.run(command, check=True)
    return sorted(dest.glob("*.whl"))


def build_bundle(out: Path, photos: Path, real: list[Path], *, wheels: bool = True) -> dict:
    """Write the bundle into ``out`` (replacing it) and return its description."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if not photos.is_dir():
        raise SystemExit(f"error: photos folder {photos} not found")
    shutil.copytree(photos, out / "photos")
    for folder in real:
        if not (folder / "manifest.jsonl").is_file():
            raise SystemExit(f"error: {folder} is not a pairs folder (no manifest.jsonl)")
        shutil.copytree(folder, out / "real_val" / folder.name, ignore=shutil.ignore_patterns(".partial", "sources"))
    found = download_wheels(out / "wheels") if wheels else []
    description = {
        "wheels": [p.name for p in found],
        "photos": sum(1 for p in (out / "photos").rglob("*") if p.is_file()),
        "real_val": sorted(p.name for p in (out / "real_val").iterdir()) if real else [],
        "bundle_bytes": folder_bytes(out),
    }
    (out / "bundle.json").write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    return description


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, required=True, help="photo folder for the on-the-fly pairs")
    parser.add_argument("--real", type=Path, nargs="*", default=[], help="pairs folders of real high-fps footage")
    parser.add_argument("--out", type=Path, default=ROOT / ".gpu", help="bundle folder (default: .gpu, ignored by git)")
    parser.add_argument("--no-wheels", action="store_true", help="skip the wheel download (tests; no network)")
    args = parser.parse_args(argv)
    description = build_bundle(args.out, args.photos, args.real, wheels=not args.no_wheels)
    total = description["bundle_bytes"] + tree_bytes()
    print(json.dumps(description, indent=2))
    print(f"bundle {description['bundle_bytes'] / 2**20:.1f} MiB + working tree {(total - description['bundle_bytes']) / 2**20:.1f} MiB"
          f" = {total / 2**20:.1f} MiB of the {LIMIT_BYTES / 2**20:.0f} MiB the device tool carries")
    if total > LIMIT_BYTES:
        print("error: too large to carry; bundle fewer photos", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
