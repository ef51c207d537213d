"""The in-memory form every loader ends in, and that partitioning and the audit share."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ImageSet:
    """1-channel images in [-1, 1] plus what is known about where each came from.

    ``groups`` (volume or patient id) and ``positions`` (slice index along the volume)
    let held-out splits take whole slabs or volumes: neighbouring slices of one volume
    are near-copies, so splitting between them would make a memorization audit blind.
    """

    images: np.ndarray  # float32, (N, 1, H, W), in [-1, 1]
    labels: np.ndarray | None = None  # int64, (N,)
    class_names: list[str] = field(default_factory=list)
    groups: np.ndarray | None = None  # str, (N,): source volume / patient
    positions: np.ndarray | None = None  # float, (N,): slice position within its group
    domains: np.ndarray | None = None  # str, (N,): modality or origin, for "by source" splits
    sources: list[str] = field(default_factory=list)  # file each image came from

    def __post_init__(self) -> None:
        x = self.images
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"images must be (N, 1, H, W), got {x.shape}")
        n = len(x)
        for name in ("labels", "groups", "positions", "domains"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise ValueError(f"{name} has {len(arr)} entries for {n} images")
        if self.sources and len(self.sources) != n:
            raise ValueError(f"sources has {len(self.sources)} entries for {n} images")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def num_classes(self) -> int:
        if self.labels is None:
            return 0
        return max(len(self.class_names), int(self.labels.max()) + 1 if len(self.labels) else 0)

    def subset(self, index: np.ndarray) -> "ImageSet":
        """The images at ``index`` (an int array), keeping all side information aligned."""
        index = np.asarray(index, dtype=np.int64)

        def take(arr: np.ndarray | None) -> np.ndarray | None:
            return None if arr is None else arr[index]

        return ImageSet(
            images=self.images[index],
            labels=take(self.labels),
            class_names=list(self.class_names),
            groups=take(self.groups),
            positions=take(self.positions),
            domains=take(self.domains),
            sources=[self.sources[i] for i in index] if self.sources else [],
        )
