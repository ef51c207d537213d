"""The sections of the HTML report, each rendered from what the run directory recorded."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any

import numpy as np

from privacy_audit.report_html import fmt, img, missing, pct, png_file_uri, png_uri, section, table
from privacy_audit.report_plots import PALETTE, RefLine, Series, bar_chart, histogram_chart, line_chart
from shared_models.images import make_grid

if TYPE_CHECKING:
    from privacy_audit.report import RunData

SYN, HELD, REAL, AUG = "#D55E00", "#0072B2", "#0072B2", "#009E73"
MAX_PER_CLASS = 12


def _mean(values: Any) -> float | None:
    arr = np.asarray([v for v in values or [] if v is not None], dtype=float)
    return float(arr.mean()) if arr.size else None


def _tile_scale(size: int) -> int:
    return max(1, round(64 / max(size, 1)))


def samples_section(d: "RunData") -> str:
    lead = "What the generator produces: audited synthetic samples, one row per class."
    s = d.samples
    if s is not None and "images" in s and len(s["images"]):
        images, labels = s["images"], s.get("labels")
        size = int(images.shape[-1])
        scale = _tile_scale(size)
        names = d.class_names()
        rows = []
        if labels is not None and len(labels) == len(images):
            for k in np.unique(labels):
                idx = np.flatnonzero(labels == k)
                grid = make_grid(images[idx[:MAX_PER_CLASS]], ncol=MAX_PER_CLASS)
                name = names[int(k)] if 0 <= int(k) < len(names) else f"class {int(k)}"
                pic = img(png_uri(grid), grid.shape[1] * scale, grid.shape[0] * scale, f"synthetic samples of {name}")
                rows.append(f'<div class="classrow"><div class="name">{escape(name)}<span>{len(idx)} audited</span></div>{pic}</div>')
        else:
            grid = make_grid(images[: 4 * MAX_PER_CLASS], ncol=MAX_PER_CLASS)
            rows.append(img(png_uri(grid), grid.shape[1] * scale, grid.shape[0] * scale, "synthetic samples (unconditional)"))
        note = f'<p class="note">{len(images)} synthetic images were audited ({size} px, shown enlarged).</p>'
        return section("samples", "Synthetic samples", lead, "".join(rows) + note)
    if d.grids:
        rnd, path = d.grids[-1]
        uri = png_file_uri(path)
        body = missing("No audited samples (audit/samples.npz): showing the last training-round grid instead.")
        if uri:
            names = ", ".join(d.class_names()) or "classes in label order"
            body += f'<figure><img class="px" src="{uri}" style="width:min(100%,720px)" alt="round {rnd} sample grid">'
            body += f'<figcaption class="note">Round {rnd}, fixed latent batch; rows top to bottom: {escape(names)}.</figcaption></figure>'
        else:
            body += missing(f"{path.name} is not a readable PNG.")
        return section("samples", "Synthetic samples", lead, body)
    return section("samples", "Synthetic samples", lead, missing("No samples: neither audit/samples.npz nor any grids/round-NNN.png exists."))


def memorization_section(d: "RunData") -> str:
    lead = (
        "Each synthetic image is compared with its most similar real training image (SSIM, after flips and small shifts). "
        "Held-out real images, which the GAN never saw, show what &ldquo;similar but not copied&rdquo; looks like; "
        "synthetic images above the threshold are flagged as possible copies."
    )
    mem = d.section("memorization")
    if mem is None:
        return section("memorization", "Memorization audit", lead, missing(_not_in_audit(d, "memorization")))
    syn, held = mem.get("synthetic_nn_ssim") or [], mem.get("holdout_nn_ssim") or []
    thr = mem.get("threshold")
    mw = mem.get("mann_whitney") or {}
    stats = [
        ["Nearest-neighbour SSIM threshold", f"{fmt(thr)} <span class=note>({escape(str(mem.get('threshold_source', 'source not recorded')))})</span>"],
        ["Synthetic images above threshold", f"{pct(mem.get('flagged_fraction'))} of {len(syn) or '?'}"],
        ["Held-out real images above threshold", f"{pct(mem.get('holdout_flagged_fraction'))} of {len(held) or '?'}" if held else "— (no held-out set)"],
        ["Median NN-SSIM, synthetic / held-out", f"{fmt(np.median(syn) if syn else None)} / {fmt(np.median(held) if held else None)}"],
        [
            "Mann–Whitney U test, synthetic vs held-out",
            f"U = {fmt(mw.get('u'), '.0f')}, z = {fmt(mw.get('z'), '.2f')}, p = {fmt(mw.get('p_value'), '.3g')}" if mw else "— (not computed)",
        ],
        ["Result", '<span class="tag good">passed</span>' if mem.get("passed") else '<span class="tag bad">failed</span>'],
    ]
    if mem.get("reasons"):
        stats.append(["Reasons", "<br>".join(escape(str(r)) for r in mem["reasons"])])
    left = table(["Memorization statistic", "Value"], stats)
    if syn:
        groups = [("synthetic → nearest training image", syn, SYN)] + ([("held-out real → nearest training image", held, HELD)] if held else [])
        marker = RefLine(float(thr), f"threshold {float(thr):.3f}") if thr is not None else None
        right = histogram_chart(groups, title="NN-SSIM histogram", x_label="SSIM to the nearest real training image", marker=marker)
    else:
        right = missing("No per-image NN-SSIM values recorded: no histogram.")
    body = f'<div class="twocol"><div>{left}</div><div>{right}</div></div>' + _pairs(d, mem)
    return section("memorization", "Memorization audit", lead, body)


def _pairs(d: "RunData", mem: dict[str, Any]) -> str:
    top = mem.get("top_pairs") or []
    head = '<h3 id="pairs">Closest synthetic / real pairs</h3>'
    p = d.pairs
    if p is None or not {"synthetic", "real"} <= set(p):
        if not top:
            return head + missing("No closest pairs recorded.")
        rows = [[str(t.get("synthetic_index")), str(t.get("real_index")), fmt(t.get("ssim")), fmt(t.get("psnr"), ".1f"), escape(str(t.get("transform", "—")))] for t in top]
        gap = missing("Pair images (audit/pairs.npz) are missing: indices and scores only.")
        return head + gap + table(["synthetic #", "real #", "SSIM", "PSNR (dB)", "transform"], rows, numeric=(0, 1, 2, 3))
    thr = mem.get("threshold")
    size = int(p["synthetic"].shape[-1])
    scale = max(1, round(96 / max(size, 1)))  # integer upscaling keeps pixels square: 32 px -> 96, 64 px -> 128
    cards = []
    for i in range(min(len(p["synthetic"]), 12)):
        meta = top[i] if i < len(top) else {}
        ssim = float(p["ssim"][i]) if "ssim" in p and i < len(p["ssim"]) else meta.get("ssim")
        psnr = float(p["psnr"][i]) if "psnr" in p and i < len(p["psnr"]) else meta.get("psnr")
        flagged = thr is not None and ssim is not None and ssim >= float(thr)
        pics = "".join(
            f"<figure>{img(png_uri(make_grid(arr[i : i + 1], 1, pad=0)), size * scale, size * scale, label)}{label}</figure>"
            for arr, label in ((p["synthetic"], "synthetic"), (p["real"], "nearest real"))
        )
        tag = ' <span class="tag bad">above threshold</span>' if flagged else ""
        ids = f"#{meta.get('synthetic_index', '?')} ↔ real #{meta.get('real_index', '?')}"
        cap = f"<b>SSIM {fmt(ssim)}</b> · PSNR {fmt(psnr, '.1f')} dB{tag}<br><span class=note>{escape(ids)} · transform {escape(str(meta.get('transform', '—')))}</span>"
        cards.append(f'<div class="pair{" flagged" if flagged else ""}"><div class="imgs">{pics}</div><div class="cap">{cap}</div></div>')
    note = f'<p class="note">The {len(cards)} synthetic images most similar to any real training image, most similar first.</p>'
    return head + note + f'<div class="pairs">{"".join(cards)}</div>'


def privacy_section(d: "RunData") -> str:
    lead = "Cumulative differential-privacy budget (ε) each hospital has spent after every round, from its own privacy ledger."
    finals = d.final_epsilons()
    if not finals:
        return section("privacy", "Privacy budget", lead, missing("No per-site privacy records: rounds.jsonl is missing or has no site entries."))
    series = []
    for i, site in enumerate(sorted(finals)):
        pts = [(r.get("round"), s) for r in d.rounds for s in r.get("sites") or [] if str(s.get("site")) == site]
        series.append(Series(site, [x for x, _ in pts], [s.get("epsilon") for _, s in pts], PALETTE[i % len(PALETTE)], flags=[bool(s.get("stopped")) for _, s in pts]))
    target = d.config.get("epsilon")
    refs = [RefLine(float(target), f"target ε = {float(target):g}", "#cf222e")] if target is not None else []
    chart = line_chart(series, title="Privacy budget spent per site", x_label="server round", y_label="cumulative ε", refs=refs)
    rows = [
        [
            escape(site), fmt(r.get("epsilon")), fmt(r.get("delta"), ".1e"), fmt(r.get("num_examples"), ".0f"), str(r.get("round", "—")),
            '<span class="tag bad">stopped (budget)</span>' if r.get("stopped") else '<span class="tag good">training</span>',
        ]
        for site, r in sorted(finals.items())
    ]
    tbl = table(["Site", "ε spent", "δ", "examples", "last round", "status"], rows, numeric=(1, 2, 3, 4))
    stopped = any(r.get("stopped") for r in finals.values())
    note = '<p class="note">Hollow markers: the site stopped training because the next round would exceed its budget.</p>' if stopped else ""
    return section("privacy", "Privacy budget", lead, f'<div class="twocol"><div>{chart}{note}</div><div>{tbl}</div></div>')


def training_section(d: "RunData") -> str:
    lead = "Discriminator and generator losses averaged over the sites each round, and the sample grid the server draws from one fixed latent batch after every round."
    body = ""
    if d.rounds:
        xs = [r.get("round") for r in d.rounds]

        def val(r: dict[str, Any], key: str) -> float | None:
            if r.get(key) is not None:
                return float(r[key])
            return _mean([s.get(key) for s in r.get("sites") or []])

        losses = line_chart(
            [Series("discriminator loss", xs, [val(r, "d_loss") for r in d.rounds], PALETTE[0]), Series("generator loss", xs, [val(r, "g_loss") for r in d.rounds], PALETTE[1])],
            title="Losses per round", x_label="server round", y_label="loss",
        )
        times = line_chart([Series("wall-clock seconds", xs, [r.get("time_s") for r in d.rounds], PALETTE[2])], title="Time per round", x_label="server round", y_label="seconds")
        body += f'<div class="twocol"><div>{losses}</div><div>{times}</div></div>'
    else:
        body += missing("No training rounds recorded (rounds.jsonl).")
    if d.grids:
        n = len(d.grids)
        picks = sorted({round(i * (n - 1) / 3) for i in range(4)}) if n > 1 else [0]
        figs = []
        for i in picks:
            rnd, path = d.grids[i]
            uri = png_file_uri(path)
            pic = f'<img class="px" src="{uri}" style="width:250px" alt="round {rnd} grid">' if uri else missing(f"{path.name} unreadable")
            figs.append(f"<figure>{pic}<figcaption>round {rnd}</figcaption></figure>")
        body += f'<h3>Sample grids over training</h3><div class="grids">{"".join(figs)}</div>'
    else:
        body += missing("No per-round sample grids (grids/round-NNN.png).")
    return section("training", "Training", lead, body)


def fidelity_section(d: "RunData") -> str:
    lead = (
        "How close the synthetic images are to real ones as a distribution, measured in one feature space. The right column is "
        "the same metric between two halves of the real data: roughly the best a perfect generator could score at this sample size."
    )
    f = d.section("fidelity")
    if f is None:
        return section("fidelity", "Fidelity", lead, missing(_not_in_audit(d, "fidelity")))
    ref = f.get("reference") or {}
    mem = d.section("memorization") or {}
    kid = lambda x: None if x is None else 1000 * float(x)  # noqa: E731
    rows = [
        ["FID", fmt(f.get("fid"), ".4g"), fmt(ref.get("fid"), ".4g"), "lower", "distance between feature means and covariances"],
        [
            "KID × 10³", f"{fmt(kid(f.get('kid_mean')), '.3g')} ± {fmt(kid(f.get('kid_std')), '.2g')}",
            fmt(kid(ref.get("kid_mean")), ".3g"), "lower", "unbiased, less sample-size dependent than FID",
        ],
        ["Precision", fmt(f.get("precision")), fmt(ref.get("precision")), "higher", "share of synthetic images that look like real ones"],
        ["Recall", fmt(f.get("recall")), fmt(ref.get("recall")), "higher", "share of real variety the generator reproduces"],
        ["Density", fmt(f.get("density")), fmt(ref.get("density")), "≈ 1", "how tightly synthetic images sit among real ones"],
        ["Coverage", fmt(f.get("coverage")), fmt(ref.get("coverage")), "higher", "share of real images with a synthetic neighbour"],
    ]
    nn_ssim = f.get("nn_ssim_mean") if f.get("nn_ssim_mean") is not None else _mean(mem.get("synthetic_nn_ssim"))
    held = fmt(_mean(mem.get("holdout_nn_ssim"))) + " <span class=note>(held-out)</span>"
    rows.append(["Mean NN-SSIM", fmt(nn_ssim), held, "—", "similarity to the closest training image (from the memorization audit)"])
    rows.append(["Mean NN-PSNR (dB)", fmt(f.get("nn_psnr_mean"), ".2f"), "—", "—", "pixel agreement with the closest training image (from the memorization audit)"])
    tbl = table(["Metric", "Synthetic vs real", "Real vs real", "Better", "Meaning"], rows, numeric=(1, 2))
    ext = str(f.get("extractor") or "unnamed extractor")
    scope = (
        "Inception features: comparable with published FIDs computed with the same network and sample sizes."
        if ext.lower().startswith("inception")
        else "Features of a network fitted to this site's data: comparable only within this report, never with published FIDs."
    )
    note = (
        f'<p class="note">Extractor: <code>{escape(ext)}</code>. {scope} '
        f"{fmt(f.get('n_real'), '.0f')} real vs {fmt(f.get('n_synthetic'), '.0f')} synthetic images, {fmt(f.get('feature_dim'), '.0f')}-d features; "
        f"precision/recall k = {fmt(f.get('k_precision_recall'), '.0f')}, density/coverage k = {fmt(f.get('k_density_coverage'), '.0f')}, "
        f"KID over {fmt(f.get('kid_subsets'), '.0f')} subsets of {fmt(f.get('kid_subset_size'), '.0f')}.</p>"
    )
    return section("fidelity", "Fidelity", lead, tbl + note)


def utility_section(d: "RunData") -> str:
    lead = "Does the synthetic data help a classifier on real patients? A small CNN is trained on each data regime and tested on held-out real images."
    u = d.section("utility")
    if u is None or not u.get("rows"):
        return section("utility", "Utility", lead, missing(_not_in_audit(d, "utility") + (" (utility needs class labels)" if d.audit else "")))
    rows, classes = [], []
    by_frac: dict[float, dict[str, dict[str, Any]]] = {}
    for r in u["rows"]:
        by_frac.setdefault(float(r.get("real_fraction", 0.0)), {})[r.get("train_on", "")] = r
    tstr = by_frac.get(0.0, {}).get("synthetic")
    if tstr:
        rows.append(["Synthetic only (TSTR)", "0", fmt(tstr.get("n_synthetic"), ".0f"), fmt(tstr.get("accuracy")), fmt(tstr.get("macro_auc")), "", ""])
        classes.append("")
    for frac in sorted(k for k in by_frac if k > 0):
        real, aug = by_frac[frac].get("real"), by_frac[frac].get("real+synthetic")
        pct = f"{frac * 100:g}%"
        if real:
            rows.append([f"Real {pct}" + (" (TRTR)" if frac == 1.0 else ""), fmt(real.get("n_real"), ".0f"), "0", fmt(real.get("accuracy")), fmt(real.get("macro_auc")), "", ""])
            classes.append("group")
        if aug:
            deltas = [_delta(aug.get(k), (real or {}).get(k)) for k in ("accuracy", "macro_auc")]
            rows.append([f"Real {pct} + synthetic", fmt(aug.get("n_real"), ".0f"), fmt(aug.get("n_synthetic"), ".0f"), fmt(aug.get("accuracy")), fmt(aug.get("macro_auc")), *deltas])
            classes.append("")
    tbl = table(["Training data", "Real images", "Synthetic images", "Accuracy", "Macro AUC", "Δ accuracy", "Δ AUC"], rows, numeric=(1, 2, 3, 4, 5, 6), row_classes=classes)
    fracs = sorted(k for k in by_frac if k > 0)
    cats = [f"{k * 100:g}% real" for k in fracs]
    charts = []
    for key, label, chance in (("accuracy", "accuracy", u.get("chance_accuracy")), ("macro_auc", "macro AUC (one-vs-rest)", 0.5)):
        groups = [("real only", [by_frac[k].get("real", {}).get(key) for k in fracs], REAL), ("real + synthetic", [by_frac[k].get("real+synthetic", {}).get(key) for k in fracs], AUG)]
        refs = [RefLine(float(tstr[key]), "synthetic only", SYN)] if tstr and tstr.get(key) is not None else []
        refs += [RefLine(float(chance), "chance", "#6B6B6B", "2 3")] if chance is not None else []
        charts.append(bar_chart(cats, groups, title=f"Test {label} by training data", x_label="share of the real training set used", y_label=f"test {label}", refs=refs))
    note = (
        f'<p class="note">Classifier: {escape(str(u.get("classifier", "?")))}, {fmt(u.get("epochs"), ".0f")} epoch(s), seed {fmt(u.get("seed"), ".0f")}; '
        f"tested on {fmt(u.get('n_test'), '.0f')} held-out real images of {fmt(u.get('num_classes'), '.0f')} classes "
        f"(majority-class accuracy {fmt(u.get('chance_accuracy'), '.2f')}). Smaller regimes use nested, class-stratified subsets.</p>"
    )
    return section("utility", "Utility", lead, tbl + note + f'<div class="twocol"><div>{charts[0]}</div><div>{charts[1]}</div></div>')


def _not_in_audit(d: "RunData", what: str) -> str:
    if d.audit is None:
        return f"No {what} results: the run has not been audited yet."
    return f"No {what} results in audit/audit.json."


def _delta(new: Any, old: Any) -> str:
    if new is None or old is None or not np.isfinite([float(new), float(old)]).all():
        return "—"
    dv = float(new) - float(old)
    cls = "up" if dv > 0.005 else ("down" if dv < -0.005 else "")
    return f'<span class="{cls}">{dv:+.3f}</span>'
