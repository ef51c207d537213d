"""Procedural head slices labelled like the demo set: three planes x two contrasts.

Public by construction (no patient is in them): the demo's warm start pretrains on them
when the run's classes are the demo's six (``server.public_data``). Shapes come from
general head anatomy only (textbook proportions, jittered); nothing is fitted to or
measured from any real image. Orientation follows the usual radiological display:
axial = anterior up, coronal = superior up, sagittal = superior up and the face to the
left. Image ``i`` depends only on ``(seed, i)``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.transform import resize

from client.dataset import ImageSet
from client.phantoms import OVERSAMPLE, downsample, ellipse, render

PLANE_CLASS_NAMES = ["ct-axial", "ct-coronal", "ct-sagittal", "mri-axial", "mri-coronal", "mri-sagittal"]
PLANES = ("axial", "coronal", "sagittal")
CONTRASTS = ("ct", "mri")

# tissue codes of the label map each slice is painted in
AIR, BONE, MARROW, FAT, SOFT, CSF, GREY, WHITE, CORD = range(9)
# (low, high) intensity in [0, 1] per tissue; each image draws its own value in the range
_CONTRAST = {
    # CT, brain-like window: very bright bone, nearly uniform grey brain, dark CSF, black air
    "ct": {AIR: (0.0, 0.02), BONE: (0.92, 1.0), MARROW: (0.78, 0.88), FAT: (0.08, 0.14), SOFT: (0.32, 0.38),
           CSF: (0.12, 0.18), GREY: (0.44, 0.48), WHITE: (0.40, 0.43), CORD: (0.40, 0.44)},
    # MRI T1: dark cortical bone, bright fat (scalp, marrow), grey cortex, brighter white matter, dark CSF
    "mri": {AIR: (0.0, 0.03), BONE: (0.03, 0.08), MARROW: (0.55, 0.7), FAT: (0.85, 0.95), SOFT: (0.28, 0.36),
            CSF: (0.06, 0.12), GREY: (0.42, 0.5), WHITE: (0.64, 0.72), CORD: (0.56, 0.64)},
}


def _depth(mask: np.ndarray) -> np.ndarray:
    """Distance (in [-1, 1] grid units) from each inside pixel to the mask's border."""
    return ndimage.distance_transform_edt(mask) * (2.0 / mask.shape[0])


def _cortex(lab: np.ndarray, region: np.ndarray, rng: np.random.Generator, gyri: float) -> None:
    """Fill ``region`` with grey matter and a white-matter core whose border is convoluted."""
    lab[region] = GREY
    dep = _depth(region)
    n = lab.shape[0]
    wig = resize(rng.normal(0.0, 1.0, (12, 12)), (n, n), order=1, anti_aliasing=False)
    lab[region & (dep > gyri * (1.0 + 0.6 * np.tanh(1.5 * wig)))] = WHITE


def _at(cy: float, cx: float, th: float, v: float, u: float) -> tuple[float, float]:
    """Grid (y, x) of the point ``u`` right / ``v`` down of (cy, cx) in a frame rotated by ``th``."""
    c, s = np.cos(th), np.sin(th)
    return cy + u * s + v * c, cx + u * c - v * s


def _axial(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    lab = np.full(yy.shape, AIR, dtype=np.int8)
    # -0.4 = skull base (orbits, posterior fossa), 0 = through the ventricles, 1 = near the vertex
    level = rng.uniform(-0.4, 1.0)
    scale = 1.0 - 0.3 * max(level, 0.0) ** 2 - 0.3 * max(-level, 0.0)
    cy, cx = rng.uniform(-0.04, 0.04, 2)
    ry = rng.uniform(0.8, 0.9) * scale
    rx = ry * rng.uniform(0.74, 0.84)
    th = rng.uniform(-0.15, 0.15)
    head = ellipse(yy, xx, cy, cx, ry, rx, th)
    if level < 0:  # the nose in front (anterior = up)
        head |= ellipse(yy, xx, *_at(cy, cx, th, -ry * 0.98, 0.0), 0.13, 0.09, th)
    dep = _depth(head)
    scalp, skull = rng.uniform(0.04, 0.065), rng.uniform(0.07, 0.1)
    cavity = ellipse(yy, xx, cy, cx, ry, rx, th)  # the skull follows the cranium, not the nose
    cdep = _depth(cavity)
    lab[head] = FAT
    lab[cavity & (cdep > scalp)] = BONE
    lab[cavity & (cdep > scalp + 0.35 * skull) & (cdep < scalp + 0.65 * skull)] = MARROW  # diploe
    lab[cavity & (cdep > scalp + skull)] = CSF
    gap = rng.uniform(0.01, 0.03)
    brain = cavity & (cdep > scalp + skull + gap)
    _cortex(lab, brain, rng, gyri=rng.uniform(0.1, 0.15))
    c, s = np.cos(th), np.sin(th)
    u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c  # u: left-right, v: front-back
    # interhemispheric fissure (falx): a CSF line at the midline, front and back
    lab[brain & (np.abs(u) < 0.012) & (np.abs(v) > (0.35 + 0.25 * (1 - abs(level))) * ry)] = CSF
    if level < 0:
        # posterior fossa: two cerebellar hemispheres behind a fourth ventricle, bone between the fossae
        for sign in (-1, 1):
            cb = ellipse(yy, xx, *_at(cy, cx, th, ry * 0.42, sign * rx * 0.3), ry * 0.3, rx * 0.32, th) & brain
            lab[cb] = GREY
            lab[cb & (_depth(cb) > 0.07)] = WHITE
            # orbits in front: fat cone, globe, bony wall
            oy, ox = _at(cy, cx, th, -ry * 0.68, sign * rx * 0.42)
            lab[ellipse(yy, xx, oy, ox, 0.2, 0.16, th) & head] = BONE
            lab[ellipse(yy, xx, oy, ox, 0.17, 0.13, th) & head] = FAT
            lab[ellipse(yy, xx, oy - 0.05 * c, ox + 0.05 * s, 0.1, 0.1, th) & head] = CSF  # vitreous
        lab[ellipse(yy, xx, *_at(cy, cx, th, ry * 0.2, 0.0), 0.05, 0.04, th)] = CSF  # fourth ventricle
        lab[ellipse(yy, xx, *_at(cy, cx, th, -ry * 0.7, 0.0), 0.16, 0.06, th) & head] = AIR  # nasal cavity
        lab[(np.abs(u) > 0.12 * rx) & (np.abs(u) < 0.7 * rx) & (np.abs(v - 0.5 * np.abs(u)) < 0.03) & brain] = BONE  # petrous ridges
    elif level < 0.75:  # lateral ventricles: a butterfly around the midline, shrinking upwards
        size = 1.0 - level / 0.75
        vry, vrx = rng.uniform(0.22, 0.32) * ry * (0.4 + 0.6 * size), rng.uniform(0.05, 0.08) * (0.5 + 0.5 * size)
        vx, vy, tilt = rng.uniform(0.08, 0.14) * rx, rng.uniform(-0.08, 0.04), rng.uniform(0.15, 0.35)
        for sign in (-1, 1):
            lab[ellipse(yy, xx, cy + vy, cx + sign * vx, vry, vrx, th + sign * tilt)] = CSF
        if level < 0.35:  # third ventricle: a slit between them
            lab[ellipse(yy, xx, cy + vy + 0.6 * vry, cx, 0.1 * ry, 0.018, th)] = CSF
    return lab


def _coronal(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    lab = np.full(yy.shape, AIR, dtype=np.int8)
    # where along the head: through the ears (temporal lobes, brainstem, neck), the front
    # (frontal lobes over orbits and nasal cavity) or the back (occipital lobes over the cerebellum)
    where = rng.choice(["mid", "front", "back"], p=[0.5, 0.25, 0.25])
    f = 1.0 if where == "mid" else rng.uniform(0.85, 0.95)
    cy, cx = rng.uniform(-0.2, -0.1), rng.uniform(-0.04, 0.04)
    ry, rx = rng.uniform(0.62, 0.7) * f, rng.uniform(0.66, 0.76) * f
    th = rng.uniform(-0.08, 0.08)
    vault = ellipse(yy, xx, cy, cx, ry, rx, th)
    base_y = cy + rng.uniform(0.42, 0.52)  # skull base, below the temporal lobes
    neck_w = rng.uniform(0.36, 0.46)
    lower = ellipse(yy, xx, base_y + 0.05, cx, 0.45, rx * rng.uniform(0.82, 0.92), th)  # ears/parotids/jaw
    neck = (np.abs(xx - cx) < neck_w) & (yy > base_y)
    if where == "front":  # the face under the frontal lobes: no neck in this plane
        lower = ellipse(yy, xx, base_y + 0.12, cx, 0.42, rx * rng.uniform(0.7, 0.8), th)
        neck = np.zeros(yy.shape, bool)
    elif where == "back":  # the back of the neck: muscles only
        neck &= yy < base_y + rng.uniform(0.3, 0.5)
    head = vault | lower | neck
    dep = _depth(head)
    scalp, skull = rng.uniform(0.04, 0.06), rng.uniform(0.07, 0.1)
    lab[head] = FAT
    lab[head & (dep > scalp)] = SOFT
    cran = vault & (yy < base_y)
    vdep = _depth(vault)
    shell = cran & (vdep > scalp) & (vdep < scalp + skull)
    lab[shell] = BONE
    lab[shell & (vdep > scalp + 0.35 * skull) & (vdep < scalp + 0.65 * skull)] = MARROW
    inside = cran & (vdep >= scalp + skull)
    lab[inside] = CSF
    # skull base: a bone band, higher in the middle (petrous ridges rising towards the sella)
    curve = base_y - 0.12 * np.exp(-(((xx - cx) / 0.35) ** 2))
    lab[vault & (yy > curve - 0.06) & (yy < curve + 0.02) & (np.abs(xx - cx) < rx * 0.95)] = BONE
    gap = rng.uniform(0.01, 0.025)
    bry, brx = ry - scalp - skull - gap, rx - scalp - skull - gap
    # two hemispheres over the top, split by the falx
    hemi_rx = brx * rng.uniform(0.5, 0.56)
    hemis = np.zeros(yy.shape, bool)
    for sign in (-1, 1):
        hemis |= ellipse(yy, xx, cy - 0.05, cx + sign * (brx - hemi_rx), bry * 0.95, hemi_rx, th)
    hemis &= inside & (yy < curve - 0.2)
    # temporal lobes below, in the middle cranial fossa
    tlobes = np.zeros(yy.shape, bool)
    for sign in (-1, 1):
        tlobes |= ellipse(yy, xx, base_y - 0.2, cx + sign * brx * 0.62, 0.14, brx * 0.32, th - sign * 0.2)
    tlobes &= inside & (yy < curve - 0.06)
    if where != "mid":  # no temporal lobes: the hemispheres reach down to the fossa floor
        hemis = np.zeros(yy.shape, bool)
        for sign in (-1, 1):
            hemis |= ellipse(yy, xx, cy + 0.02, cx + sign * (brx - hemi_rx), bry, hemi_rx, th)
        tlobes = np.zeros(yy.shape, bool)
        hemis &= inside & (yy < (curve - 0.12 if where == "front" else curve - 0.3))
    brain = (hemis | tlobes) & ~((np.abs(xx - cx) < 0.014) & (yy < cy + 0.2))
    _cortex(lab, brain, rng, gyri=rng.uniform(0.08, 0.12))
    if where == "front":
        for sign in (-1, 1):  # orbits: bony rim, fat, globe; maxillary sinus under each
            ox, oy = cx + sign * rx * 0.42, base_y + 0.05
            lab[ellipse(yy, xx, oy, ox, 0.19, 0.19, 0.0) & head] = BONE
            lab[ellipse(yy, xx, oy, ox, 0.16, 0.16, 0.0) & head] = FAT
            lab[ellipse(yy, xx, oy, ox, 0.1, 0.1, 0.0) & head] = CSF
            lab[ellipse(yy, xx, oy + 0.33, ox - sign * 0.06, 0.13, 0.12, 0.0) & head] = AIR
        lab[(np.abs(xx - cx) < 0.09) & (yy > base_y - 0.05) & (yy < base_y + 0.45) & head] = AIR  # nasal cavity
        lab[(np.abs(xx - cx) < 0.015) & (yy > base_y - 0.05) & (yy < base_y + 0.45) & head] = BONE  # septum
        lab[(np.abs(yy - base_y - 0.5) < 0.03) & (np.abs(xx - cx) < rx * 0.5) & head] = BONE  # palate
        return lab
    if where == "back":
        tent = (np.abs(yy - (curve - 0.3) - 0.25 * np.abs(xx - cx)) < 0.025) & inside  # tentorium
        lab[tent] = CSF
        for sign in (-1, 1):  # cerebellar hemispheres under the tentorium
            cb = ellipse(yy, xx, curve.max() - 0.18, cx + sign * brx * 0.42, 0.17, brx * 0.4, 0.0) & inside & ~tent
            cb &= yy > curve - 0.3 + 0.25 * np.abs(xx - cx) + 0.03
            lab[cb] = GREY
            lab[cb & (_depth(cb) > 0.05)] = WHITE
        return lab
    # lateral ventricles near the midline, third ventricle slit, brainstem going down
    vy = cy + rng.uniform(0.0, 0.08)
    for sign in (-1, 1):
        lab[ellipse(yy, xx, vy, cx + sign * 0.09, rng.uniform(0.08, 0.13), rng.uniform(0.035, 0.055), th + sign * 0.5)] = CSF
    stem = (np.abs(xx - cx - (yy - vy) * np.sin(th)) < rng.uniform(0.08, 0.11)) & (yy > vy + 0.16) & head
    lab[stem & (yy < curve - 0.02)] = WHITE
    lab[stem & (yy >= curve - 0.02)] = CORD
    # neck: vertebra (dens / C2) in the middle, mandible rami at the sides
    vert = (np.abs(xx - cx) < rng.uniform(0.1, 0.14)) & (yy > base_y + rng.uniform(0.12, 0.2)) & neck
    lab[vert] = BONE
    lab[vert & (_depth(vert) > 0.03)] = MARROW
    for sign in (-1, 1):
        ramus = (np.abs(xx - cx - sign * neck_w * 0.78) < 0.035) & (yy > base_y + 0.05) & (yy < base_y + 0.42)
        lab[ramus & head] = BONE
    return lab


def _sagittal(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    lab = np.full(yy.shape, AIR, dtype=np.int8)
    lateral = rng.random() < 0.4  # off the midline: through a hemisphere and an orbit, no midline structures
    f = rng.uniform(0.82, 0.95) if lateral else 1.0
    cy, cx = rng.uniform(-0.25, -0.15), rng.uniform(0.02, 0.12)
    ry, rx = rng.uniform(0.58, 0.66) * f, rng.uniform(0.72, 0.8) * f
    th = rng.uniform(-0.12, 0.12)
    cran = ellipse(yy, xx, cy, cx, ry, rx, th)
    front = cx - rx  # forehead at the left
    face = ellipse(yy, xx, cy + 0.62, front + 0.42, 0.5, 0.36, 0.15)
    nose = ellipse(yy, xx, cy + rng.uniform(0.42, 0.5), front + 0.04, 0.14, rng.uniform(0.08, 0.12), -0.5)
    chin = ellipse(yy, xx, cy + 0.98, front + 0.32, 0.14, 0.16, 0.0)
    neck_x0, neck_x1 = front + 0.5 + rng.uniform(-0.05, 0.05), cx + rx * rng.uniform(0.55, 0.7)
    neck = (xx > neck_x0 + 0.12 * (yy - 0.4)) & (xx < neck_x1 + 0.12 * (yy - 0.4)) & (yy > cy + 0.5)
    head = cran | face | chin | neck | (nose if not lateral else False)
    dep = _depth(head)
    scalp, skull = rng.uniform(0.04, 0.06), rng.uniform(0.07, 0.1)
    lab[head] = FAT
    lab[head & (dep > scalp)] = SOFT
    cdep = _depth(cran)
    # floor of the cranial cavity: high over the orbits (front), low in the posterior fossa
    floor = cy + ry * (0.25 + 0.7 * np.clip((xx - front) / (2 * rx), 0, 1))
    shell = cran & (cdep > scalp) & (cdep < scalp + skull) & (yy < floor + 0.1)
    lab[shell] = BONE
    lab[shell & (cdep > scalp + 0.35 * skull) & (cdep < scalp + 0.65 * skull)] = MARROW
    inside = cran & (cdep >= scalp + skull) & (yy < floor)
    lab[inside] = CSF
    lab[cran & (yy >= floor) & (yy < floor + 0.06) & (cdep > scalp)] = BONE  # skull base
    gap = rng.uniform(0.01, 0.025)
    brain_region = inside & (cdep > scalp + skull + gap) & (yy < floor - gap)
    # cerebellum at the back, under the tentorium; cerebrum elsewhere
    cb_cy, cb_cx = cy + ry * 0.52, cx + rx * 0.45
    cereb = ellipse(yy, xx, cb_cy, cb_cx, ry * 0.27, rx * 0.3, 0.3) & brain_region
    tent = np.abs((yy - cb_cy) + 0.45 * (xx - cb_cx) + ry * 0.22) < 0.02  # dural fold above it
    cerebrum = brain_region & ~cereb & ~tent & ~((yy > cb_cy - ry * 0.22) & (xx > cb_cx - rx * 0.1))
    _cortex(lab, cerebrum, rng, gyri=rng.uniform(0.09, 0.13))
    lab[cereb] = GREY
    folia = np.sin(np.arctan2(yy - cb_cy, xx - cb_cx) * 14) > 0.2
    lab[cereb & folia & (_depth(cereb) > 0.04)] = WHITE  # arbor vitae
    if lateral:
        oy, ox = cy + ry * 0.62, front + 0.2
        lab[ellipse(yy, xx, oy, ox, 0.17, 0.2, 0.0) & head] = FAT  # orbit
        lab[ellipse(yy, xx, oy, ox - 0.04, 0.1, 0.1, 0.0) & head] = CSF  # globe
        lab[ellipse(yy, xx, oy + 0.3, ox + 0.1, 0.12, 0.15, 0.0) & head] = AIR  # maxillary sinus
        return lab
    # corpus callosum: a white arc, the lateral ventricle under it
    cc_cy, cc_cx = cy + rng.uniform(0.08, 0.14), cx - rx * 0.05
    cc_ry, cc_rx = ry * 0.3, rx * 0.42
    arc = ellipse(yy, xx, cc_cy, cc_cx, cc_ry, cc_rx, th) & ~ellipse(yy, xx, cc_cy, cc_cx, cc_ry - 0.06, cc_rx - 0.06, th)
    lab[arc & (yy < cc_cy) & brain_region] = WHITE
    vent = ellipse(yy, xx, cc_cy, cc_cx, cc_ry - 0.07, cc_rx - 0.08, th) & ~ellipse(yy, xx, cc_cy + 0.1, cc_cx, cc_ry - 0.05, cc_rx - 0.12, th)
    lab[vent & (yy < cc_cy + 0.03) & brain_region] = CSF
    # brainstem from under the ventricle down through the foramen magnum into the cord
    x_top, y_top = cc_cx + rx * 0.12, cc_cy + 0.05
    slope = rng.uniform(0.25, 0.4)  # leans backwards going down
    axis = x_top + slope * (yy - y_top)
    in_skull = ~cereb & (yy < floor) & (xx < cb_cx - 0.05) & inside
    lab[(np.abs(xx - axis) < 0.12) & (yy > y_top + 0.03) & in_skull] = CSF  # cisterns around the stem
    stem = (np.abs(xx - axis) < 0.085) & (yy > y_top) & head
    lab[stem & ~cereb & ((yy < floor) | (yy > floor + 0.06)) & (yy < floor + 0.04) & (xx < cb_cx - 0.05)] = WHITE
    cord = (np.abs(xx - axis) < 0.06) & (yy > floor + 0.04) & neck
    canal = (np.abs(xx - axis) < 0.09) & (yy > floor + 0.04) & neck
    lab[canal] = CSF
    lab[cord] = CORD
    # vertebral bodies in front of the cord, with discs between them
    vbody = (xx < axis - 0.11) & (xx > axis - 0.3) & (yy > floor + 0.1) & neck
    step = rng.uniform(0.15, 0.19)
    disc = np.mod(yy - floor, step) < 0.035
    lab[vbody] = MARROW
    lab[vbody & (_depth(vbody) < 0.02)] = BONE
    lab[vbody & disc] = SOFT
    # face: sinus and airway (air), hard palate (bone), tongue
    lab[ellipse(yy, xx, cy + ry * 0.72, front + 0.3, 0.1, 0.13, 0.0) & head] = AIR  # maxillary/nasal air
    airway = (np.abs(xx - (axis - 0.4)) < 0.05) & (yy > cy + ry * 0.95) & neck
    lab[airway] = AIR
    palate = (np.abs(yy - (cy + ry * 0.9)) < 0.025) & (xx > front + 0.15) & (xx < front + 0.55)
    lab[palate & head] = BONE
    lab[chin & (_depth(chin) > 0.04) & (_depth(chin) < 0.09) & (yy > cy + 0.98)] = BONE  # mandible
    return lab


def _strip(lab: np.ndarray) -> np.ndarray:
    """Brain extraction: keep the brain (and the CSF it encloses), everything else air."""
    brain = np.isin(lab, (GREY, WHITE))
    brain = ndimage.binary_fill_holes(ndimage.binary_closing(brain, iterations=2))
    return np.where(brain, lab, AIR).astype(lab.dtype)


def _slice(rng: np.random.Generator, size: int, plane: str, contrast: str, stripped: float = 0.0) -> np.ndarray:
    """One labelled head slice in [0, 1], (size, size); MRI ones are brain-extracted
    (skull and scalp removed) with probability ``stripped``."""
    noise = np.random.default_rng(rng.integers(2**63))
    n = size * OVERSAMPLE
    yy, xx = np.mgrid[-1 : 1 : n * 1j, -1 : 1 : n * 1j]
    zoom = rng.uniform(0.92, 1.05)  # field of view jitter
    yy, xx = yy / zoom, xx / zoom
    lab = {"axial": _axial, "coronal": _coronal, "sagittal": _sagittal}[plane](rng, yy, xx)
    if contrast == "mri" and rng.random() < stripped:
        lab = _strip(lab)
    table = _CONTRAST[contrast]
    values = np.array([rng.uniform(*table[t]) for t in range(len(table))], dtype=np.float32)
    img = values[lab]
    tissue = lab != AIR
    tex = resize(noise.normal(0.0, 1.0, (12, 12)), (n, n), order=1, anti_aliasing=False)
    tex = ndimage.uniform_filter(tex, size=max(3, n // 12))
    img[tissue] += (0.03 * tex / (tex.std() + 1e-8))[tissue]
    img = ndimage.gaussian_filter(img, sigma=0.5 * OVERSAMPLE)
    img = img * rng.uniform(0.9, 1.05) + noise.normal(0.0, 0.015, img.shape) * ndimage.binary_dilation(tissue, iterations=2)
    return downsample(img, size)


def make_head_slices(n: int, image_size: int = 32, seed: int = 0, mri_stripped: float = 0.0) -> ImageSet:
    """``n`` procedural head slices labelled like the demo set (``PLANE_CLASS_NAMES``).

    Image ``i`` has class ``i % 6`` (ct-axial, ct-coronal, ct-sagittal, mri-axial,
    mri-coronal, mri-sagittal) and depends only on ``(seed, i)``. ``domains`` holds the
    contrast ("ct" / "mri"), ``groups`` one id per image. ``mri_stripped``: the share of
    MRI slices shown brain-extracted (skull and scalp removed), as many MRI collections are.
    """
    if not 0.0 <= mri_stripped <= 1.0:
        raise ValueError(f"mri_stripped must be in [0, 1], got {mri_stripped}")
    labels = np.arange(n, dtype=np.int64) % len(PLANE_CLASS_NAMES)

    def draw(i: int) -> np.ndarray:
        contrast, plane = PLANE_CLASS_NAMES[labels[i]].split("-")
        rng = np.random.default_rng([seed, i, 7])  # 7: a stream apart from make_phantoms'
        return _slice(rng, image_size, plane, contrast, mri_stripped)

    imgs = render(n, image_size, draw, "slice")
    return ImageSet(
        images=imgs,
        labels=labels,
        class_names=list(PLANE_CLASS_NAMES),
        groups=np.asarray([f"headslice-{seed}-{i}" for i in range(n)]),
        positions=None,
        domains=np.asarray([PLANE_CLASS_NAMES[k].split("-")[0] for k in labels]),
        sources=[f"head_slices(seed={seed}, mri_stripped={mri_stripped})[{i}]" for i in range(n)],
    )
