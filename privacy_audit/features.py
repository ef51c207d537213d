"""Feature extractors for fidelity metrics, and features that remember who made them.

FID, KID and the k-NN metrics are only comparable between numbers computed in the same
feature space, so every ``Features`` carries its extractor's id, and the metrics in
``privacy_audit.fidelity`` refuse to mix two ids. Extractors (nothing is ever downloaded):

* ``InceptionExtractor``: the standard FID network, from a TorchScript file the user
  supplies (NVIDIA's ``inception-2015-12-05.pt``, as used by StyleGAN2-ADA and clean-fid),
  by path or through ``FEDSYNTH_INCEPTION``. Its numbers are comparable with the literature.
* ``SiteCNNExtractor`` (offline default with labels): the penultimate layer of a small
  CNN classifier trained, seeded, on the real images at the site. Comparable only
  within one audit, never with published FIDs.
* ``RandomConvExtractor`` (offline default without labels): an untrained, seeded conv
  net; random embeddings are a reasonable fidelity space for non-ImageNet images
  (Naeem et al., 2020, "Reliable fidelity and diversity metrics").
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Union

import numpy as np
import torch
from torch import nn

from client.dataset import ImageSet
from privacy_audit.utility import CLASSIFIER_ID, train_classifier

ENV_INCEPTION = "FEDSYNTH_INCEPTION"


class ExtractorMismatch(ValueError):
    """Two feature sets come from different extractors: their distances mean nothing."""


@dataclass(frozen=True)
class Features:
    """Feature vectors (N, D) float64, tagged with the extractor that produced them."""

    values: np.ndarray
    extractor: str

    def __post_init__(self) -> None:
        if self.values.ndim != 2:
            raise ValueError(f"features must be (N, D), got {self.values.shape}")
        if not self.extractor:
            raise ValueError("features need an extractor id")

    def __len__(self) -> int:
        return len(self.values)


def same_space(*feats: Features) -> str:
    """The common extractor id, or ExtractorMismatch."""
    ids = {f.extractor for f in feats}
    if len(ids) != 1:
        raise ExtractorMismatch(f"features from different extractors cannot be compared: {sorted(ids)}")
    return ids.pop()


class Extractor(Protocol):
    name: str

    def __call__(self, images: np.ndarray) -> Features: ...


def _run(fn: Callable[[torch.Tensor], torch.Tensor], images: np.ndarray, batch_size: int) -> np.ndarray:
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size], dtype=np.float32))
            out.append(fn(x).reshape(len(x), -1).double().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def _weights_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:10]


class _Standardizer:
    """Per-dimension z-score fitted on the real images' features: part of the extractor.

    Keeps the KID polynomial kernel (x.y/d + 1)^3 in its intended range and weighs every
    dimension alike in the k-NN metrics; constant (dead) dimensions are left unscaled.
    """

    def __init__(self, x: np.ndarray) -> None:
        self.mean = x.mean(0)
        std = x.std(0)
        self.std = np.where(std > 1e-8, std, 1.0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std


class InceptionExtractor:
    """The 2048-d pool3 features of a user-supplied TorchScript InceptionV3.

    Called as in StyleGAN2-ADA / clean-fid: ``net(x, return_features=True)`` with ``x``
    float (N, 3, H, W) holding integer values in [0, 255]; the network resizes to 299 px
    and normalises itself. Our gray images are quantised to 8 bits (as a PNG would be)
    and repeated on three channels.
    """

    def __init__(self, path: Union[str, Path], batch_size: int = 32) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: Inception TorchScript file not found (fedsynth never downloads it)")
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        try:
            self.net = torch.jit.load(str(self.path), map_location="cpu").eval()
        except RuntimeError as exc:
            raise ValueError(f"{self.path}: not a TorchScript file ({str(exc).splitlines()[0]})") from exc
        self.batch_size = batch_size
        self.sha256 = digest
        self.name = f"{self.path.stem} (user file sha256 {digest[:12]})"

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.round((x.clamp(-1, 1) + 1) * 127.5).repeat(1, 3, 1, 1)
        return self.net(x, return_features=True)

    def __call__(self, images: np.ndarray) -> Features:
        return Features(_run(self._forward, images, self.batch_size), self.name)


class SiteCNNExtractor:
    """Penultimate-layer features of a small CNN trained on the site's real images,
    z-scored with the real images' feature statistics."""

    def __init__(self, real: ImageSet, *, seed: int = 0, epochs: int = 12) -> None:
        if real.labels is None or len(np.unique(real.labels)) < 2:
            raise ValueError("site-cnn features need labelled real images of at least two classes")
        k = max(real.num_classes, 2)
        self.model, _ = train_classifier(real.images, real.labels, k, epochs=epochs, seed=seed)
        self.image_size = real.image_size
        self.scale = _Standardizer(_run(self.model.embed, real.images, 256))
        self.name = (
            f"site-cnn-v1({CLASSIFIER_ID}, trained on {len(real)} real images, {k} classes, "
            f"seed {seed}, {epochs} epochs, weights {_weights_digest(self.model)})"
        )

    def __call__(self, images: np.ndarray) -> Features:
        _same_size(self.image_size, images)
        return Features(self.scale(_run(self.model.embed, images, 256)), self.name)


class RandomConvExtractor:
    """Untrained conv features (seeded): per-channel mean and std after each of four conv
    stages, z-scored with the real images' statistics.

    Pooling several depths keeps both texture (early) and layout (late) statistics.
    """

    def __init__(self, real: ImageSet, *, seed: int = 0, width: int = 16) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            chans = [1, width, 2 * width, 4 * width, 4 * width]
            self.stages = nn.ModuleList(
                nn.Sequential(nn.Conv2d(chans[i], chans[i + 1], 3, stride=2 if i < 3 else 1, padding=1), nn.LeakyReLU(0.2))
                for i in range(4)
            ).eval()
        self.image_size = real.image_size
        self.scale = _Standardizer(_run(self._forward, real.images, 256))
        self.name = (
            f"random-conv-v1(untrained, width {width}, seed {seed}, weights {_weights_digest(self.stages)}, "
            f"standardized on {len(real)} real images)"
        )

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        for stage in self.stages:
            x = stage(x)
            parts += [x.mean((2, 3)), x.std((2, 3))]
        return torch.cat(parts, 1)

    def __call__(self, images: np.ndarray) -> Features:
        _same_size(self.image_size, images)
        return Features(self.scale(_run(self._forward, images, 256)), self.name)


def _same_size(expected: int, images: np.ndarray) -> None:
    if images.shape[-1] != expected or images.shape[-2] != expected:
        raise ValueError(f"extractor was built for {expected} px images, got {tuple(images.shape[-2:])}")


ExtractorSpec = Union[None, str, Path, Extractor]


def resolve_extractor(spec: ExtractorSpec, real: ImageSet, *, seed: int = 0) -> Extractor:
    """An extractor from a spec: an Extractor, a TorchScript path, "site-cnn", "random-conv",
    or None: ``$FEDSYNTH_INCEPTION`` if set, else site-cnn with labels, else random-conv."""
    if spec is None:
        env = os.environ.get(ENV_INCEPTION, "").strip()
        if env:
            return InceptionExtractor(env)
        has_labels = real.labels is not None and len(np.unique(real.labels)) >= 2
        spec = "site-cnn" if has_labels else "random-conv"
    if isinstance(spec, str) and spec == "site-cnn":
        return SiteCNNExtractor(real, seed=seed)
    if isinstance(spec, str) and spec == "random-conv":
        return RandomConvExtractor(real, seed=seed)
    if isinstance(spec, (str, Path)):
        return InceptionExtractor(spec)
    if callable(spec) and getattr(spec, "name", ""):
        return spec
    raise TypeError(f"not an extractor: {spec!r} (want a path, 'site-cnn', 'random-conv' or an object with .name and __call__)")
