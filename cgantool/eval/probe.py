"""The attribute probe for the built-in shapes data: a small CNN that reads shape and colour off an image.

Trained once per resolution on real shapes images (seed 10_000, disjoint from the default training seed)
and cached in cgantool's cache dir. "Attribute accuracy" is how often a generated image shows the class it
was generated for; the same probe on held-out real images gives the ceiling.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from cgantool.data.shapes import COLORS, SHAPES, generate_shapes
from cgantool.eval.progress import EvalProgress
from cgantool.files import atomic_write

PROBE_SEED = 10_000
HELDOUT_SEED = 20_000
VERSION = 3


class ShapeProbe(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        )
        self.shape_head = nn.Linear(32, len(SHAPES))
        self.color_head = nn.Linear(32, len(COLORS))

    def forward(self, images_u8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(images_u8.float() / 127.5 - 1)
        return self.shape_head(h), self.color_head(h)

    @torch.no_grad()
    def predict_class(self, images_u8: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Class index (colour * len(SHAPES) + shape) for each image."""
        self.eval()
        out = []
        for i in range(0, len(images_u8), batch_size):
            s, c = self(images_u8[i : i + batch_size])
            out.append(c.argmax(1) * len(SHAPES) + s.argmax(1))
        return torch.cat(out)


def _path(resolution: int) -> Path:
    from cgantool.data import cache_dir

    return cache_dir() / "probes" / f"shapes-{resolution}-v{VERSION}.safetensors"


def load_probe(resolution: int, n_train: int = 4000, steps: int = 400) -> ShapeProbe:
    """The cached probe for ``resolution``, trained on first use (a few seconds to a minute on a CPU)."""
    path = _path(resolution)
    probe = ShapeProbe()
    if path.exists():
        probe.load_state_dict(load_file(str(path)))
        return probe.eval()
    data = generate_shapes(n_train, resolution, seed=PROBE_SEED)
    shape_y, color_y = data.attributes[:, 0, 0], data.attributes[:, 0, 1]
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        probe = ShapeProbe()
    opt = torch.optim.Adam(probe.parameters(), lr=2e-3)
    probe.train()
    with EvalProgress(f"training the shapes attribute probe for {resolution} px (once, then cached)", steps,
                      unit="steps") as progress:
        for _ in range(steps):
            idx = torch.randint(n_train, (64,), generator=g)
            s, c = probe(data.images[idx])
            loss = F.cross_entropy(s, shape_y[idx]) + F.cross_entropy(c, color_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            progress.advance(1)
    weights = {k: v.contiguous() for k, v in probe.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(weights, str(tmp)))
    return probe.eval()


def real_ceiling(probe: ShapeProbe, resolution: int, n: int = 2000) -> float:
    """Probe accuracy on held-out real shapes images: the best a generator can score."""
    data = generate_shapes(n, resolution, seed=HELDOUT_SEED)
    return float((probe.predict_class(data.images) == data.labels).float().mean())


def attribute_accuracy(images_u8: torch.Tensor, labels: torch.Tensor, probe: ShapeProbe) -> dict[str, float]:
    """Fraction of images showing their class, and their shape and colour separately."""
    pred = probe.predict_class(images_u8)
    n_shapes = len(SHAPES)
    return {
        "attribute_accuracy": float((pred == labels).float().mean()),
        "shape_accuracy": float((pred % n_shapes == labels % n_shapes).float().mean()),
        "color_accuracy": float((pred // n_shapes == labels // n_shapes).float().mean()),
    }
