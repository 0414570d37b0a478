"""Does each class-conditional preset draw the class it is asked for, on real images? (issue 31 item 3)

    python benchmarks/class_accuracy.py --steps 3000 --out runs/class-acc            # the 2-core CPU figures
    python benchmarks/class_accuracy.py --steps 20000 --device cuda --out runs/ca    # longer, on a GPU

Needs scikit-learn (a benchmark-only requirement, not a cgantool dependency: ``pip install scikit-learn``).
scikit-learn's bundled handwritten digits (1,797 8x8 greys, no download) are upscaled to the resolution
(bilinear, default 16 px), written as grey-to-RGB PNGs into a class-folder tree (``zero/`` ... ``nine/``; a
stratified test split is held out) and trained on through the same folder path a user's ImageNet takes. A
logistic-regression classifier is fitted on the real training PNGs (read back from disk). Each preset trains
through the real CLI (``cgantool train``) with the ``make demo`` recipe less its D2D-CE term (1 D step, batch 32,
lr 1e-3 / 2e-3, betas (0, 0.9) for every preset, EMA 0.999 from step 250, no lr decay; no flips, whatever the preset says, as digits are not
mirror-symmetric; ``--extra`` adds more ``--set`` flags), then
``cgantool sample --class NAME`` draws the same N latents (same seed) for every class, from the EMA G and the
raw G (``--no-ema``). Printed per preset, one JSON line each:

* ``real_acc``: the classifier's accuracy on the held-out real images (its ceiling; chance is 0.1),
* ``ema_acc`` / ``raw_acc``: the fraction of samples drawn for class k that the classifier reads as k,
* ``ema_class_effect`` / ``raw_class_effect``: mean |G(z, a) - G(z, b)| in grey levels (0-255), averaged over
  the N latents and every pair of classes a != b: how much the label changes the image at fixed z,
* ``ema_perm_acc`` / ``raw_perm_acc``: the same under the best one-to-one relabelling of G's classes (Hungarian
  matching on the confusion matrix): high ``perm_acc`` with low ``acc`` means G follows its label but draws the
  wrong digit for it (ContraGAN's known class permutation), both at 0.1 that it does not follow its label at all,
* ``ema_z_effect`` / ``raw_z_effect``: mean |G(z_i, k) - G(z_i+1, k)| in grey levels (a collapsed G has ~0),
* ``ema_read_as`` / ``raw_read_as``: the digit the classifier reads most often for each asked class,
* ``d_probe_acc``, ``d_rank``, ``d_mean_share``, ``d_norm``, ``d_real_logit``: whether D's own features still carry
  the classes (a linear probe on them, their effective rank and the share of their mean direction; see
  ``d_features``) — how `dualcontrast` without R1 was found to collapse them,
* ``wall_s``: the training time.

Presets: ``sngan`` (projection D), ``contragan`` (2C loss), ``dualcontrast``, ``contragan+d2d`` (contragan with
``--set loss.d2d_ce.weight=1``, ReACGAN's D2D-CE beside the 2C loss). ``--variant PRESET@key=val,key=val``
(repeatable) adds a run of PRESET with those overrides on top of the recipe, labelled as written, e.g.
``--variant contragan@optim.lr_d=2e-4,optim.beta1=0.5,optim.beta2=0.999``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._cli import positive, run  # noqa: E402

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
DEMO_RECIPE = [  # Makefile `demo` target, less its preset, data, width and steps
    "train.d_steps_per_g_step=1", "train.batch_size=32", "optim.lr_g=1e-3", "optim.lr_d=2e-3",
    "optim.beta1=0.0", "optim.beta2=0.9", "optim.lr_decay=none", "train.ema_decay=0.999",
    "train.ema_start_step=250",
    "train.hflip=false",  # digits are not mirror-symmetric: a flipped 3 is no 3 to the classifier
]
SHORTHANDS = {"contragan+d2d": ("contragan", ["loss.d2d_ce.weight=1"])}


def cgantool(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cgantool", *args], cwd=ROOT, capture_output=True, text=True)


def write_digits(root: Path, resolution: int, test_fraction: float, seed: int) -> tuple[Path, Path]:
    """sklearn's digits as PNG class folders: root/train/<name>/*.png and root/test/<name>/*.png."""
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.from_numpy(digits.images).float()[:, None] / 16.0  # [N, 1, 8, 8] in [0, 1]
    x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    grey = (x.clamp(0, 1) * 255).round().to(torch.uint8)[:, 0].numpy()  # [N, R, R]
    idx_train, idx_test = train_test_split(np.arange(len(grey)), test_size=test_fraction, random_state=seed,
                                           stratify=digits.target)
    for split, idx in (("train", idx_train), ("test", idx_test)):
        for i in idx:
            folder = root / split / NAMES[digits.target[i]]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(grey[i]).convert("RGB").save(folder / f"{i:04d}.png")
    return root / "train", root / "test"


def read_folder(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Class-folder PNGs → (grey pixels [N, R*R] in [0, 1], class indices [N])."""
    xs, ys = [], []
    for k, name in enumerate(NAMES):
        for f in sorted((folder / name).glob("*.png")):
            xs.append(_grey(f))
            ys.append(k)
    return np.stack(xs), np.array(ys)


def _grey(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64).mean(axis=2).reshape(-1) / 255.0


def read_samples(folder: Path) -> np.ndarray:
    """The PNGs `cgantool sample` wrote, in index order → grey pixels [N, R*R] in [0, 1]."""
    files = sorted(p for p in folder.glob("*.png") if p.name != "grid.png")
    return np.stack([_grey(f) for f in files])


def fit_classifier(x: np.ndarray, y: np.ndarray):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000, C=1.0).fit(x, y)


def judge(clf, ckpt: Path, out: Path, n: int, seed: int, ema: bool, device: str) -> dict:
    """Sample n images of every class with the same latents; class accuracy and the grey-level class effect."""
    per_class = []
    for name in NAMES:
        folder = out / f"{'ema' if ema else 'raw'}-{name}"
        args = ["sample", str(ckpt), "--class", name, "-n", str(n), "--seed", str(seed), "--out", str(folder),
                "--force", "--no-grid", "--device", device] + ([] if ema else ["--no-ema"])
        r = cgantool(args)
        if r.returncode != 0:
            raise RuntimeError(f"sample failed: {r.stderr.strip()[-400:]}")
        per_class.append(read_samples(folder))
    from scipy.optimize import linear_sum_assignment

    k = len(NAMES)
    confusion = np.zeros((k, k))  # [asked class, class read by the classifier] as fractions of the asked class
    for a, x in enumerate(per_class):
        confusion[a] = np.bincount(clf.predict(x), minlength=k) / len(x)
    rows, cols = linear_sum_assignment(-confusion)  # the one-to-one relabelling that reads best
    effect = float(np.mean([np.abs(per_class[a] - per_class[b]).mean()
                            for a, b in itertools.combinations(range(k), 2)]) * 255)
    z_effect = float(np.mean([np.abs(x[:-1] - x[1:]).mean() for x in per_class]) * 255)
    return {"acc": round(float(np.trace(confusion) / k), 3),
            "perm_acc": round(float(confusion[rows, cols].sum() / k), 3),
            "class_effect": round(effect, 2), "z_effect": round(z_effect, 2),
            "read_as": [NAMES[c] for c in confusion.argmax(1)]}


def d_features(ckpt: Path, real: Path) -> dict:
    """Does D's pooled feature h (the input of its last linear layer) still carry the classes? On the real training
    images: a logistic-regression probe's 3-fold accuracy on L2-normalised h, h's effective rank (centred,
    (sum s)^2 / sum s^2 of its singular values), the share of its energy in its mean direction, |h|, D's mean
    logit on reals. A D whose features collapsed onto one direction reads near chance here."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    from cgantool.checkpoint import load_checkpoint
    from cgantool.data import load_dataset
    from cgantool.data.batches import to_float
    from cgantool.engine.model import build_gan

    ck = load_checkpoint(ckpt)
    gan = build_gan(ck.config, ck.data_info)
    gan.D.load_state_dict(ck.tensors("D"))
    gan.D.eval()
    data = load_dataset(ck.config.data.model_copy(update={"source": str(real)}))
    with torch.no_grad():
        out = gan.D.backbone(to_float(data.images), data.labels)
    h = out.h.double()
    sv = torch.linalg.svdvals(h - h.mean(0))
    probe = cross_val_score(LogisticRegression(max_iter=2000), (h / h.norm(dim=1, keepdim=True)).numpy(),
                            data.labels.numpy(), cv=3).mean()
    return {"d_probe_acc": round(float(probe), 3), "d_rank": round(float(sv.sum() ** 2 / (sv ** 2).sum()), 1),
            "d_mean_share": round(float(h.mean(0).norm() ** 2 / (h.norm(dim=1) ** 2).mean()), 3),
            "d_norm": round(float(h.norm(dim=1).mean()), 2), "d_real_logit": round(float(out.logits.mean()), 2)}


def parse_preset(spec: str) -> tuple[str, list[str]]:
    if spec in SHORTHANDS:
        return SHORTHANDS[spec]
    preset, _, extra = spec.partition("@")
    return preset, [s for s in extra.split(",") if s]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="sngan,contragan,dualcontrast,contragan+d2d",
                   help="comma-separated ('' for none); 'contragan+d2d' = contragan with loss.d2d_ce.weight=1")
    p.add_argument("--variant", action="append", default=[],
                   help="PRESET@key=val,key=val: one more run with these overrides (repeatable)")
    p.add_argument("--steps", type=positive, default=3000)
    p.add_argument("--resolution", type=positive, default=16)
    p.add_argument("--channels", type=positive, default=32, help="model.g_channels and model.d_channels")
    p.add_argument("--samples", type=positive, default=100, help="samples per class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-raw", action="store_true", help="judge the EMA G only")
    p.add_argument("--extra", action="append", default=[], help="one more --set key=val for every preset")
    p.add_argument("--out", default="runs/class-acc")
    args = p.parse_args()
    out = Path(args.out)
    data = out / f"digits{args.resolution}"
    if not (data / "train").is_dir():
        write_digits(data, args.resolution, test_fraction=0.25, seed=0)
    x_train, y_train = read_folder(data / "train")
    x_test, y_test = read_folder(data / "test")
    clf = fit_classifier(x_train, y_train)
    real_acc = round(float((clf.predict(x_test) == y_test).mean()), 3)
    print(json.dumps({"data": str(data / "train"), "train_images": len(y_train), "test_images": len(y_test),
                      "real_acc": real_acc}), flush=True)
    specs = [s for s in args.presets.split(",") if s] + args.variant
    for spec in specs:
        preset, extra = parse_preset(spec)
        run_dir = out / spec.replace("@", "_").replace(",", "_").replace("=", "-")
        sets = DEMO_RECIPE + [f"model.g_channels={args.channels}", f"model.d_channels={args.channels}",
                              f"data.resolution={args.resolution}", f"train.sample_every={args.steps}",
                              f"train.checkpoint_every={args.steps}", "train.log_every=100"] + extra + args.extra
        cmd = ["train", "--preset", preset, "--data", str(data / "train"), "--steps", str(args.steps),
               "--out", str(run_dir), "--force", "--no-progress", "--seed", str(args.seed), "--device", args.device]
        for s in sets:
            cmd += ["--set", s]
        t0 = time.perf_counter()
        r = cgantool(cmd)
        wall = time.perf_counter() - t0
        row: dict = {"preset": spec, "steps": args.steps, "real_acc": real_acc, "wall_s": round(wall, 1)}
        if r.returncode != 0:
            row["error"] = r.stderr.strip()[-600:]
            print(json.dumps(row), flush=True)
            continue
        ckpt = run_dir / "checkpoints" / "last.safetensors"
        for ema in (True, False) if not args.no_raw else (True,):
            try:
                res = judge(clf, ckpt, run_dir / "judge", args.samples, args.seed, ema, args.device)
            except RuntimeError as e:
                row["error"] = str(e)
                break
            tag = "ema" if ema else "raw"
            row.update({f"{tag}_{key}": value for key, value in res.items()})
        row.update(d_features(ckpt, data / "train"))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    run(main)
