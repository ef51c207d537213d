"""Public data for the server-side warm start: never any site's private images.

Pretraining costs no privacy only if the images are public AND disjoint from the
data the sites then treat as private. In the demo the bundled set plays the
hospitals' data, so only procedural phantoms may serve there.

With ``warm_start = "phantoms"``: when the run's classes are exactly the demo's six
plane x contrast classes (``client.head_slices.PLANE_CLASS_NAMES``), the public set is
procedural head slices labelled with the SAME names and order
(``make_head_slices``), so a conditional warm start can learn class k -> phantom
class k. Otherwise it is today's axial lesion / no-lesion phantoms, whose labels the
warm start must not use (``server.pretrain`` then draws random run classes).
"""

from __future__ import annotations

from collections.abc import Sequence

from client.dataset import ImageSet
from shared_models.config import RunConfig

PHANTOM_COUNT = 2048


def run_class_names(cfg: RunConfig, class_names: Sequence[str] | None = None) -> list[str] | None:
    """The run's class names if known: the caller's (e.g. the run facts' "class-names"),
    else the demo's plane x contrast names when the run trains on the demo set with 6
    classes (its names are fixed by the bundled file), else None."""
    from client.head_slices import PLANE_CLASS_NAMES

    if class_names:
        return [str(c) for c in class_names]
    if cfg.data == "demo" and cfg.num_classes == len(PLANE_CLASS_NAMES):
        return list(PLANE_CLASS_NAMES)
    return None


def load_public(cfg: RunConfig, class_names: Sequence[str] | None = None) -> tuple[ImageSet, str]:
    """(public images, a description for the run record) for ``cfg.warm_start``.

    ``class_names``: the run's class names, if the caller has them (see
    ``run_class_names`` for the fallback). Pass ``run_class_names(cfg, class_names)`` to
    ``server.pretrain.pretrain(class_names=...)``: it uses the public labels only when
    they equal the run's names, which holds exactly when labelled head slices were chosen.
    """
    source = cfg.warm_start
    if source == "phantoms":
        from client.head_slices import PLANE_CLASS_NAMES, make_head_slices
        from client.phantoms import make_phantoms

        seed = cfg.seed + 10_000
        names = run_class_names(cfg, class_names)
        if names == list(PLANE_CLASS_NAMES):
            data = make_head_slices(PHANTOM_COUNT, cfg.image_size, seed=seed)
            return data, (
                f"{PHANTOM_COUNT} procedural labelled head slices (client.head_slices.make_head_slices, seed {seed}): "
                f"classes {', '.join(PLANE_CLASS_NAMES)} = the run's classes, label k -> run class k"
            )
        data = make_phantoms(PHANTOM_COUNT, cfg.image_size, seed=seed)
        return data, f"{PHANTOM_COUNT} procedural head phantoms (client.phantoms, seed {seed}); labels not the run's, so random run classes"
    if source == "demo" and cfg.data == "demo":
        raise ValueError("warm-start 'demo' is refused: the sites train on the demo set, so it is not public to them")
    if source == cfg.data:
        raise ValueError(f"warm-start {source!r} is the sites' own data: pretraining on it would bypass DP")
    from client.loaders import load_images

    data, problems = load_images(source, cfg.image_size)
    note = f" ({len(problems)} files skipped)" if problems else ""
    return data, f"{len(data)} public images from {source}{note}"
