"""Full local audit of a simulated run (all data is on this machine): what the report shows.

Memorization against the pooled training images of all sites (a copy of any site's
patient counts), fidelity and utility against the pooled held-out images.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from client.dataset import ImageSet
from server.run_dir import RunDir, write_json
from shared_models.sampling import generate
from simulations.generate import load_generator
from simulations.sites import load_source, simulated_site


def pooled(sets: list[ImageSet]) -> ImageSet:
    labels = None if sets[0].labels is None else np.concatenate([s.labels for s in sets])
    return ImageSet(np.concatenate([s.images for s in sets]), labels, list(sets[0].class_names))


def audit_run(run_path: Path, *, n: int = 600, seed: int = 0, utility_epochs: int | None = None) -> dict[str, Any]:
    """Audit ``n`` samples of the run's final generator; writes RUN/audit/{audit.json,samples.npz,pairs.npz}."""
    from privacy_audit.fidelity import fidelity_report
    from privacy_audit.memorization import audit_memorization
    from privacy_audit.utility import utility_report

    run = RunDir(Path(run_path))
    g, cfg, _ckpt = load_generator(run.root)
    images, labels = generate(g, n, seed)
    synthetic = ImageSet(images, labels, [])
    data = load_source(cfg)
    sites = [simulated_site(cfg, i, data) for i in range(cfg.hospitals)]
    train, holdout = pooled([s.train for s in sites]), pooled([s.holdout for s in sites])
    synthetic.class_names = list(train.class_names)
    mem = audit_memorization(train.images, images, holdout.images)
    memo = mem.to_dict()
    # the medical-GAN figures: SSIM and PSNR to the nearest training image (from the search above)
    fid = fidelity_report(train, synthetic, seed=seed, nn_ssim_mean=float(np.mean(mem.synthetic.ssim)), nn_psnr_mean=float(np.mean(mem.synthetic.psnr)))
    kwargs = {} if utility_epochs is None else {"epochs": utility_epochs}
    util = utility_report(train, synthetic, holdout, seed=seed, **kwargs) if labels is not None else None
    audit = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "n_synthetic": n,
        "seed": seed,
        "memorization": memo,
        "fidelity": fid,
        "utility": util,
        "extractor": fid.get("extractor"),
    }
    run.audit_dir.mkdir(parents=True, exist_ok=True)
    _save_npz(run.audit_dir / "samples.npz", images=images, labels=labels if labels is not None else np.zeros(0))
    pairs = memo["top_pairs"]
    _save_npz(
        run.audit_dir / "pairs.npz",
        synthetic=images[[p["synthetic_index"] for p in pairs]],
        real=train.images[[p["real_index"] for p in pairs]],
        ssim=np.array([p["ssim"] for p in pairs], dtype=np.float32),
        psnr=np.array([p["psnr"] for p in pairs], dtype=np.float32),
    )
    write_json(run.audit_dir / "audit.json", audit)
    return audit


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Atomic npz write (np.savez adds .npz to names without it, so the temp name keeps it)."""
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
