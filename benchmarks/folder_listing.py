"""How long a run's start spends listing an image folder, at ImageNet's shape (1,000 class folders).

    python benchmarks/folder_listing.py --files 200000 1280000     # ImageNet train has 1,281,167 images

Writes empty ``.JPEG`` files (the listing never opens them) into ``--classes`` class folders of a temporary
folder, then times, per size: ``cgantool.data.sources.image_files`` (what every start of a run on a folder does, the
cache fingerprint's input), the ``Path.rglob`` listing it replaced (same files and order, checked), the cache
fingerprint (one ``stat`` per file) and the recipe probe (``cgantool.recipes.typical_short_side``: a sample of
class folders, not the whole tree). Prints one JSON object per size; the time should grow linearly with the files.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._cli import positive, run  # noqa: E402


def rglob_listing(root: Path) -> list[Path]:
    """The listing ``image_files`` used before its os.scandir walk (flat or class-folder tree)."""
    from cgantool.data.sources import IMAGE_EXTENSIONS

    found = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    return [p for p in found if p.parent != root] or found


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, round(time.perf_counter() - t0, 3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=positive, nargs="+", default=[200_000])
    p.add_argument("--classes", type=positive, default=1000)
    p.add_argument("--dir", default=None, help="where to write the tree (default: a temporary folder)")
    args = p.parse_args()
    from cgantool.data.sources import _stamp, image_files
    from cgantool.recipes import typical_short_side

    for n in args.files:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            root = Path(tmp) / "train"
            per = -(-n // args.classes)
            made = 0
            for k in range(args.classes):
                folder = root / f"n{k:08d}"
                folder.mkdir(parents=True)
                for i in range(min(per, n - made)):
                    (folder / f"n{k:08d}_{i}.JPEG").touch()
                made += min(per, n - made)
            (files, _), t_new = timed(image_files, root)
            old, t_old = timed(rglob_listing, root)
            assert files == old, "the two listings differ"
            _, t_stamp = timed(_stamp, files)
            _, t_probe = timed(typical_short_side, str(root))
            print(json.dumps({"files": len(files), "classes": args.classes, "image_files_s": t_new,
                              "rglob_s": t_old, "speedup": round(t_old / max(t_new, 1e-9), 2),
                              "fingerprint_s": t_stamp, "probe_s": t_probe}), flush=True)


if __name__ == "__main__":
    run(main)
