"""Simulate the demo federation cheaply in ONE process and measure DP-GAN quality.

3 sites (the demo's iid partition and train/held-out splits), optional public warm start
on phantoms, R rounds of local DP training (client.dp_trainer.train_round, each site with
its own ledger and sigma from client.accounting.noise_multiplier_for), FedAvg as the
example-weighted mean of the packed G+D state dicts. Prints one JSON object: settings,
sigma/q/steps/epsilon per site, wall time per site-round, and quality (TSTR accuracy of a
small CNN trained on synthetic images and tested on the sites' held-out real images,
and the accuracy of a real-trained CNN on synthetic images). Writes a class-per-row grid.

Run: OMP_WAIT_POLICY=PASSIVE python benchmarks/dp_quality/fedsim.py --out /tmp/x --set key=value ...
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from client.accounting import default_delta, noise_multiplier_for
from client.dataset import ImageSet
from client.dp_trainer import planned_steps, sample_rate, train_round
from client.ledger import PrivacyLedger
from shared_models.config import RunConfig
from shared_models.gan import build_models
from shared_models.images import save_png
from shared_models.sampling import generate, sample_grid
from shared_models.weights import load_packed, pack


def fedavg(states: list[dict[str, torch.Tensor]], weights: list[int]) -> dict[str, torch.Tensor]:
    """Example-weighted mean of packed state dicts (what the server's FedAvg does)."""
    total = float(sum(weights))
    return {k: sum(s[k].double() * (w / total) for s, w in zip(states, weights)).to(states[0][k].dtype) for k in states[0]}


def quality(g: torch.nn.Module, train: ImageSet, test: ImageSet, k: int, seed: int, repeats: int = 1) -> dict[str, Any]:
    """TSTR and classifier-on-synthetic accuracy (privacy_audit.utility's small CNN).

    40 epochs: at the audit's default 8 the CNN underfits this small set (train-on-real
    accuracy 0.28 at 8 epochs, 0.82 at 30, 0.96 at 60 on the demo's held-out slices).
    ``repeats`` > 1: mean over that many classifier seeds (same synthetic images); one
    144-image test set and one CNN seed swing TSTR by ~0.1, so single figures are noisy.
    """
    from privacy_audit.utility import predict_proba, train_classifier

    syn, labels = generate(g, 100 * k, seed=seed + 7)
    runs = []
    for r in range(repeats):
        tstr, _ = train_classifier(syn, labels, k, epochs=40, seed=seed + 100 * r)
        real, _ = train_classifier(train.images, train.labels, k, epochs=40, seed=seed + 100 * r)
        pred = predict_proba(tstr, test.images).argmax(1)
        runs.append({
            "tstr_acc": float(np.mean(pred == test.labels)),
            "real_clf_on_syn_acc": float(np.mean(predict_proba(real, syn).argmax(1) == labels)),
            "trtr_acc": float(np.mean(predict_proba(real, test.images).argmax(1) == test.labels)),
            "tstr_per_class": [float(np.mean(pred[test.labels == c] == c)) if np.any(test.labels == c) else None for c in range(k)],
        })
    out: dict[str, Any] = {key: float(np.mean([r[key] for r in runs])) for key in ("tstr_acc", "real_clf_on_syn_acc", "trtr_acc")}
    out["syn_pixel_std_within_class"] = float(np.mean([syn[labels == c].std(0).mean() for c in range(k)]))
    if repeats > 1:
        out["tstr_accs"] = [r["tstr_acc"] for r in runs]
    out["tstr_per_class"] = [None if any(r["tstr_per_class"][c] is None for r in runs) else float(np.mean([r["tstr_per_class"][c] for r in runs])) for c in range(k)]
    out["majority_class_acc"] = float(np.max(np.bincount(test.labels, minlength=k)) / len(test.labels))
    return out


def concat(sets: list[ImageSet]) -> ImageSet:
    return ImageSet(np.concatenate([s.images for s in sets]), np.concatenate([s.labels for s in sets]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--set", action="append", default=[], help="RunConfig key=value")
    ap.add_argument("--public-n", type=int, default=2048)
    ap.add_argument("--public", choices=("phantoms", "slices"), default="phantoms",
                    help="phantoms: make_phantoms, random run classes (today); slices: make_head_slices, labelled like the demo")
    ap.add_argument("--mri-stripped", type=float, default=0.0, help="slices only: share of brain-extracted MRI slices")
    ap.add_argument("--quality-repeats", type=int, default=1, help="classifier seeds to average TSTR over")
    ap.add_argument("--prior-quality", action="store_true", help="also measure quality of G right after the warm start")
    ap.add_argument("--warm-cache", type=Path, default=None, help="folder caching pretrained weights across experiments")
    args = ap.parse_args()
    torch.set_num_threads(1)
    values: dict[str, Any] = dict(kv.split("=", 1) for kv in args.set)
    cfg = RunConfig.from_flower({**RunConfig().to_flower(), **values})
    args.out.mkdir(parents=True, exist_ok=True)
    from client.loaders import load_demo
    from simulations.sites import simulated_site

    data = load_demo(cfg.image_size)
    sites = [simulated_site(cfg, i, data) for i in range(cfg.hospitals)]
    g, d = build_models(cfg)
    report: dict[str, Any] = {"public": args.public, "mri_stripped": args.mri_stripped, "config": {k: v for k, v in cfg.to_flower().items() if k not in ("out-dir", "ledger-dir", "device", "data")}}
    if cfg.warm_start == "phantoms" and cfg.warm_start_steps > 0:
        from client.head_slices import make_head_slices
        from client.phantoms import make_phantoms
        from server.pretrain import pretrain

        key = f"{cfg.image_size}-{cfg.latent_dim}-{cfg.g_width}-{cfg.d_width}-{cfg.num_classes}-{cfg.batch_size}-0.0002-0.0002-{cfg.warm_start_steps}-{cfg.seed}-{args.public_n}" + ("" if args.public == "phantoms" else f"-{args.public}-v2-strip{args.mri_stripped}")
        cache = args.warm_cache / f"warm-{key}.pt" if args.warm_cache else None
        if cache is not None and cache.is_file():
            saved = torch.load(cache)
            load_packed(g, d, saved["state"])
            report["warm_start"] = {**saved["stats"], "cached": str(cache)}
        else:
            if args.public == "slices":
                public = make_head_slices(args.public_n, cfg.image_size, seed=cfg.seed + 10_000, mri_stripped=args.mri_stripped)
                report["warm_start"] = pretrain(g, d, public, cfg, cfg.warm_start_steps, "cpu", cfg.seed, class_names=data.class_names)
            else:
                public = make_phantoms(args.public_n, cfg.image_size, seed=cfg.seed + 10_000)
                report["warm_start"] = pretrain(g, d, public, cfg, cfg.warm_start_steps, "cpu", cfg.seed)
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                torch.save({"state": pack(g, d), "stats": report["warm_start"]}, cache)
        save_png(sample_grid(g, seed=1234), args.out / "grid-warm.png", scale=3)
        if args.prior_quality:
            t0 = time.monotonic()
            report["prior_quality"] = quality(g, concat([s.train for s in sites]), concat([s.holdout for s in sites]), cfg.num_classes, cfg.seed, args.quality_repeats)
            print(json.dumps({"prior_quality": report["prior_quality"], "seconds": round(time.monotonic() - t0, 1)}), flush=True)
    ledger_dir = Path(tempfile.mkdtemp(prefix="ledger-", dir=args.out))
    plan = []
    for s in sites:
        n = len(s.train)
        q, delta = sample_rate(cfg.batch_size, n), cfg.delta or default_delta(n)
        sigma = cfg.noise_multiplier or noise_multiplier_for(cfg.epsilon, delta, q, planned_steps(cfg), accountant=cfg.accountant)
        plan.append({"site": s.name, "n": n, "q": q, "sigma": sigma, "delta": delta,
                     "ledger": PrivacyLedger(ledger_dir / f"{s.name}.json", target_epsilon=cfg.epsilon, delta=delta, accountant=cfg.accountant)})
    state = pack(g, d)
    rounds = []
    for r in range(1, cfg.num_server_rounds + 1):
        states, weights, rows = [], [], []
        for i, (s, p) in enumerate(zip(sites, plan)):
            gi, di = build_models(cfg)
            load_packed(gi, di, state)
            t0 = time.monotonic()
            m = train_round(gi, di, s.train, cfg, p["ledger"], noise_multiplier=p["sigma"], device="cpu", seed=cfg.seed + 1000 * r + i)
            rows.append({"site": s.name, "seconds": round(time.monotonic() - t0, 1), **{k: m[k] for k in ("epsilon", "d_loss", "g_loss", "stopped")}})
            if not m["stopped"]:
                states.append(pack(gi, di))
                weights.append(len(s.train))
        if states:
            state = fedavg(states, weights)
        rounds.append({"round": r, "sites": rows})
        print(json.dumps(rounds[-1]), flush=True)
        load_packed(g, d, state)
        save_png(sample_grid(g, seed=1234), args.out / f"grid-r{r}.png", scale=3)
    load_packed(g, d, state)
    train_all, test_all = concat([s.train for s in sites]), concat([s.holdout for s in sites])
    report["plan"] = [{k: v for k, v in p.items() if k != "ledger"} | {"epsilon": p["ledger"].spent_epsilon()} for p in plan]
    report["site_round_seconds"] = float(np.mean([row["seconds"] for rr in rounds for row in rr["sites"]]))
    report["quality"] = quality(g, train_all, test_all, cfg.num_classes, cfg.seed, args.quality_repeats)
    report["grid"] = str(args.out / f"grid-r{cfg.num_server_rounds}.png")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
