"""Benchmark report: results.json, results.csv, report.md and a self-contained report.html.

The HTML has no external resource: CSS is inline, charts (matplotlib, Agg backend) and image grids are
base64 PNG/JPEG data URIs. report.md shows the same tables and links the same figures, written as files
beside it. Every table states its protocol (P3M whole-image, P3M -T, DIM unknown-region) and where its definition
comes from; the two protocols are never mixed in one table. Published numbers say which paper and table they come
from and are shown beside measured ones only when the measured ones are on the real P3M-10k: SAD is a sum over
pixels, so numbers on the small synthetic images are not comparable with them. Speed columns time every image
after one untimed warm-up call (one-time compilation excluded) and say so. Extra `Section`s (the demo's real
photos) come before the measured tables.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import html
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from p3m.atomic import write_bytes_atomic
from p3m.bench import published
from p3m.bench.config import BenchmarkConfig
from p3m.data.p3m10k import P3M10k
from p3m.data.synth import META_FILE as SYNTH_META_FILE
from p3m.errors import P3MError
from p3m.io import encode_image, image_size, read_image, read_mask
from p3m.metrics.evaluate import DIM_PROTOCOL_SOURCE, P3M_PROTOCOL_SOURCE

__all__ = [
    "Section",
    "Table",
    "column_label",
    "curves_chart",
    "main_table",
    "make_grid",
    "sad_chart",
    "write_report",
]

Figure = tuple[str, str, bytes, str]  # (file name, caption, bytes, mime type)


@dataclass
class Section:
    """A part of the report ahead of the measured tables (the demo's real photos): a title, a paragraph and
    figures (their file names must not clash with the report's own: sad_chart.png, training_curves.png,
    grid_NN.jpg)."""

    title: str
    text: str
    figures: list[Figure] = dataclasses.field(default_factory=list)


#: How every speed column is measured, said in its header and caption.
TIMING_NOTE = "one untimed warm-up call first, so one-time compilation (numba, oneDNN kernels) is excluded"


@dataclass
class Table:
    """A table rendered both as Markdown and as HTML."""

    title: str
    caption: str
    headers: list[str]
    rows: list[list[str]]

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", self.caption, ""] if self.title else []
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "|".join("---" for _ in self.headers) + "|")
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self.rows)
        return (
            f"<h3>{html.escape(self.title)}</h3><p class='caption'>{html.escape(self.caption)}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and abs(value) < 10 ** -(digits - 1):
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return str(value)


def column_label(setting_label: str | None, split: str) -> str:
    """'B:B' / 'B:N' style label: train setting : test images (B = P3M-500-P blurred, N = P3M-500-NP normal)."""
    test = "B" if split == "P3M-500-P" else "N"
    return f"{setting_label}:{test}" if setting_label else ("P" if split == "P3M-500-P" else "NP")


def _columns(cfg: BenchmarkConfig) -> list[tuple[str, str, str]]:
    """(setting name, split, column label) of the trimap-free tables, in config order."""
    return [(s.name, split, column_label(s.label, split)) for s in cfg.settings for split in cfg.test_splits]


def _find(results: list[dict], method: str, setting: str | None, split: str) -> dict | None:
    for r in results:
        if r["method"] == method and r["setting"] == setting and r["split"] == split:
            return r
    return None


def _methods(results: list[dict], kind: str) -> list[dict]:
    seen, out = set(), []
    for r in results:
        if r["kind"] == kind and r["method"] not in seen:
            seen.add(r["method"])
            out.append(r)
    return out


def _speed_header(cfg: BenchmarkConfig) -> str:
    return f"s/img ({cfg.inference.device}, warm)"


def main_table(cfg: BenchmarkConfig, results: list[dict], *, real_p3m10k: bool = True, sizes: str = "") -> Table:
    """Trimap-free methods, P3M protocol (whole image): SAD/MSE/MAD per train:test column, and the published SAD
    beside them when the data is the real P3M-10k (``real_p3m10k``); ``sizes`` describes the test images."""
    cols = _columns(cfg)
    settings = {s.name: s for s in cfg.settings}
    headers = ["Method", "Params (M)"]
    for _, _split, label in cols:
        headers += [f"{label} SAD", f"{label} MSE", f"{label} MAD"]
        if real_p3m10k:
            headers.append(f"{label} published SAD (P3M-10k)")
    headers.append(_speed_header(cfg))
    rows = []
    for m in _methods(results, "trimap-free"):
        row = [m["method"], _fmt(m["params"] / 1e6, 2)]
        times = []
        for setting, split, _ in cols:
            r = _find(results, m["method"], setting, split)
            met = r["metrics"] if r else {}
            row += [_fmt(met.get("sad")), _fmt(met.get("mse")), _fmt(met.get("mad"))]
            if real_p3m10k:
                pub = None
                s = settings[setting]
                if s.obfuscation == "none" and not s.copy_paste:
                    pub = published.published_for(m["type"], split)
                row.append("—" if pub is None else f"{pub[0]:g}" + (f" / MSE {pub[1]:g}" if pub[1] is not None else ""))
            if r and r.get("seconds_per_image") is not None:
                times.append(r["seconds_per_image"])
        row.append(_fmt(float(np.mean(times)), 3) if times else "—")
        rows.append(row)
    n = sorted({r["images"] for r in results if r["kind"] == "trimap-free"})
    caption = (
        f"P3M protocol, whole image ({P3M_PROTOCOL_SOURCE}); means over {', '.join(map(str, n))} images per test "
        f"set{f' of {sizes}' if sizes else ''}. Column X:Y = trained on setting X : tested on B = P3M-500-P "
        "(blurred faces) or N = P3M-500-NP (normal faces). SAD is a sum over pixels (/1000): it grows with the "
        "image area, so SADs of images of other sizes are not comparable. "
        + (
            f"'published SAD (P3M-10k)': {published.SOURCE_PPT}. "
            if real_p3m10k
            else "Published numbers (measured on the full-size P3M-10k photographs) are listed at the end, apart: "
            "they are not comparable with these. "
        )
        + f"Speed: {TIMING_NOTE}."
    )
    return Table("Trimap-free methods (PPT setting)", caption, headers, rows)


def trimap_table(cfg: BenchmarkConfig, results: list[dict]) -> Table:
    """Trimap-based methods given the test trimap: P3M protocol -T metrics per test set."""
    headers = ["Method", "Solver"]
    for split in cfg.test_splits:
        headers += [f"{split} SAD-T", f"{split} MSE-T", f"{split} MAD-T", f"{split} images"]
    headers.append(_speed_header(cfg))
    rows = []
    for m in _methods(results, "trimap-based"):
        row = [m["method"], m["type"]]
        times = []
        for split in cfg.test_splits:
            r = _find(results, m["method"], None, split)
            met = r["metrics"] if r else {}
            row += [
                _fmt(met.get("sad_t")),
                _fmt(met.get("mse_t")),
                _fmt(met.get("mad_t")),
                str(r["images"] if r else 0),
            ]
            if r and r.get("seconds_per_image") is not None:
                times.append(r["seconds_per_image"])
        row.append(_fmt(float(np.mean(times)), 3) if times else "—")
        rows.append(row)
    caption = (
        f"P3M protocol -T variants ({P3M_PROTOCOL_SOURCE}: prediction forced to 0/1 on the trimap's known "
        "regions, MSE-T/MAD-T normalised by the unknown-pixel count). Classical solvers of pymatting, given the "
        f"test trimap; they need no training, so no train setting. Speed: {TIMING_NOTE}."
    )
    return Table("Trimap-based methods (given the test trimap)", caption, headers, rows)


def dim_table(cfg: BenchmarkConfig, results: list[dict]) -> Table:
    """All methods under the DIM protocol (unknown region only)."""
    headers = ["Method", "Train:test"]
    for key in ("SAD (U)", "MSE (U)", "Grad (U)", "Conn (U)"):
        headers.append(key)
    rows = []
    for r in results:
        met = r["metrics"]
        if "dim_sad" not in met:
            continue
        rows.append(
            [
                r["method"],
                r["column"] if r["kind"] == "trimap-free" else f"trimap:{r['column']}",
                _fmt(met.get("dim_sad")),
                _fmt(met.get("dim_mse")),
                _fmt(met.get("dim_grad")),
                _fmt(met.get("dim_conn")),
            ]
        )
    caption = (
        f"DIM protocol ({DIM_PROTOCOL_SOURCE}): unknown region of the test trimap only, SAD/1000, raw MSE, "
        "Grad/1000, Conn/1000. Not comparable with the P3M-protocol tables."
    )
    return Table("All methods, DIM protocol", caption, headers, rows)


def detail_table(cfg: BenchmarkConfig, results: list[dict]) -> Table:
    """Grad, Conn and privacy SAD (P3M protocol) for the trimap-free methods."""
    headers = ["Method", "Train:test", "Grad", "Conn", "SAD-P (face region)", "images"]
    rows = []
    for r in results:
        if r["kind"] != "trimap-free":
            continue
        met = r["metrics"]
        rows.append(
            [
                r["method"],
                r["column"],
                _fmt(met.get("grad")),
                _fmt(met.get("conn")),
                _fmt(met.get("sad_privacy")),
                str(r["images"]),
            ]
        )
    caption = (
        f"P3M protocol, whole image ({P3M_PROTOCOL_SOURCE}): Grad (/10) and Conn (/1000); SAD-P restricted to "
        "the face mask of P3M-500-P (as the IJCV code, ViTAE-Transformer/P3M-Net, names it; its definition is not "
        "published, so the restriction of SAD to the mask is our reading). '—' where not computed "
        "(evaluation.fast skips Grad and Conn)."
    )
    return Table("Trimap-free methods, further P3M-protocol metrics", caption, headers, rows)


def efficiency_table(results: list[dict], device: str = "cpu") -> Table:
    headers = ["Method", "Kind", "Width", "Params (M)", "Train steps", "Train time (s)", f"Inference s/img ({device})"]
    rows, seen = [], set()
    for r in results:
        key = (r["method"], r["setting"])
        if key in seen:
            continue
        seen.add(key)
        times = [
            x["seconds_per_image"]
            for x in results
            if (x["method"], x["setting"]) == key and x.get("seconds_per_image") is not None
        ]
        label = r["method"] + (f" ({r['setting_label']})" if r["setting_label"] else "")
        params = _fmt(r["params"] / 1e6, 3) if r["params"] else "—"
        rows.append(
            [
                label,
                r["kind"],
                _fmt(r.get("width")),
                params,
                _fmt(r.get("train_steps")),
                _fmt(r.get("train_seconds"), 1),
                _fmt(float(np.mean(times)), 3) if times else "—",
            ]
        )
    caption = (
        f"Measured in this run on this machine, on {device} (inference.device). Inference: mean seconds per test "
        f"image, {TIMING_NOTE}. Train time: wall time of the training stage when it ran."
    )
    return Table("Size and speed", caption, headers, rows)


PUBLISHED_NOTE = "Published on the real P3M-10k (full-size photographs, 500 per test set), not measured here."


def published_tables() -> list[Table]:
    """The published P3M-10k tables (the MM21 paper's benchmark, as the authors' README gives it), verbatim."""
    settings = ["B:B", "B:N", "N:B", "N:N"]
    headers = ["Method"] + [f"{s} {m}" for s in settings for m in ("SAD", "MSE")]
    out = []
    for title, source, table in (
        ("Published: trimap-free methods on P3M-500-P", published.SOURCE_TRIMAP_FREE, published.TRIMAP_FREE),
        ("Published: trimap-based methods on P3M-500-P", published.SOURCE_TRIMAP_BASED, published.TRIMAP_BASED),
    ):
        rows = [[name] + [f"{v:g}" for s in settings for v in values[s]] for name, values in table.items()]
        out.append(Table(title, f"{PUBLISHED_NOTE} Source: {source}.", headers, rows))
    rows = [
        [split, f"{sad:g}", "unconfirmed" if mse is None else f"{mse:g}"]
        for split, (sad, mse) in published.P3M_NET_PPT.items()
    ]
    out.append(
        Table(
            "Published: P3M-Net R34 under PPT",
            f"{PUBLISHED_NOTE} Source: {published.SOURCE_PPT}.",
            ["Test set", "SAD", "MSE"],
            rows,
        )
    )
    return out


# ------------------------------------------------------------------------------------------- figures


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def sad_chart(cfg: BenchmarkConfig, results: list[dict]) -> bytes | None:
    """Grouped bars: whole-image SAD (P3M protocol) per method (and setting), one bar per test set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: list[tuple[str, dict[str, float]]] = []
    for r in results:
        label = r["method"] + (f"\n({r['setting_label']})" if r["setting_label"] else "\n(trimap)")
        if not groups or groups[-1][0] != label:
            groups.append((label, {}))
        if "sad" in r["metrics"]:
            groups[-1][1][r["split"]] = r["metrics"]["sad"]
    if not groups:
        return None
    splits = cfg.test_splits
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(groups) + 1), 3.6))
    width = 0.8 / len(splits)
    x = np.arange(len(groups))
    for i, split in enumerate(splits):
        values = [g[1].get(split, np.nan) for g in groups]
        bars = ax.bar(x + (i - (len(splits) - 1) / 2) * width, values, width, label=split)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, [g[0] for g in groups], fontsize=8)
    ax.set_ylabel("SAD (P3M protocol, whole image)")
    ax.set_title("SAD per method and test set (lower is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def curves_chart(curves: dict[str, list[dict]]) -> bytes | None:
    """Training loss (total) against step for every trained method, from the trainers' train_log.jsonl."""
    series = {k: [r for r in v if r.get("type") == "train" and "loss" in r] for k, v in curves.items()}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for label, records in series.items():
        ax.plot([r["step"] for r in records], [r["loss"]["total"] for r in records], label=label)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("total training loss")
    ax.set_title("Training curves (train_log.jsonl)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _tile(image: np.ndarray, label: str, height: int) -> np.ndarray:
    import cv2

    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    h, w = image.shape[:2]
    width = max(1, round(w * height / h))
    tile = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    lines = label.split("\n")
    band = np.full((4 + 14 * len(lines), width, 3), 255, np.uint8)
    for i, line in enumerate(lines):  # 0.4-scale Hershey glyphs are about 7 px wide: each line is cut to the tile
        text = line[: max(4, width // 7)]
        cv2.putText(band, text, (3, 13 + 14 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, tile], axis=0)


def make_grid(rows: list[list[tuple[str, np.ndarray]]], height: int = 160, gap: int = 4) -> np.ndarray:
    """Labelled tiles (HxW gray or HxWx3 uint8) in rows -> one HxWx3 uint8 image on a white background.

    A label may have several lines ("\n"); the labels of one row get as many lines as its longest one."""
    rendered = []
    for row in rows:
        lines = max(label.count("\n") for label, _ in row)
        tiles = [_tile(img, label + "\n" * (lines - label.count("\n")), height) for label, img in row]
        spaced = []
        for t in tiles:
            spaced += [t, np.full((t.shape[0], gap, 3), 255, np.uint8)]
        rendered.append(np.concatenate(spaced[:-1], axis=1))
    width = max(r.shape[1] for r in rendered)
    out = []
    for r in rendered:
        pad = np.full((r.shape[0], width - r.shape[1], 3), 255, np.uint8)
        out += [np.concatenate([r, pad], axis=1), np.full((gap, width, 3), 255, np.uint8)]
    return np.concatenate(out[:-1], axis=0)


def _error_map(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    import cv2

    err = np.abs(pred.astype(np.int16) - gt.astype(np.int16)).astype(np.uint8)
    return cv2.applyColorMap(err, cv2.COLORMAP_INFERNO)[:, :, ::-1].copy()


def grids(cfg: BenchmarkConfig, results: list[dict], dataset: P3M10k, pred_dirs: dict) -> list[tuple[str, np.ndarray]]:
    """Per chosen sample: [input, ground truth, each method's alpha] over [trimap, -, each error map]; each
    method's label gives its SAD on this image, so the grid shows how the image scored, not only the means.

    Samples are the first `report.grid_samples` readable images of each test split by stem (fixed, not chosen
    by result)."""
    count = cfg.report.grid_samples
    height = cfg.report.grid_tile or 160
    out = []
    for split in cfg.test_splits:
        shown = 0
        for sample in dataset.split(split):
            if shown >= count:
                break
            try:
                image, gt = read_image(sample.image), read_mask(sample.mask)
            except P3MError:
                continue  # an unreadable sample (reported by the prediction stage): show the next one
            shown += 1
            top = [("input", image), ("ground truth", gt)]
            bottom = [
                ("trimap", read_mask(sample.trimap) if sample.trimap else np.zeros_like(gt)),
                ("", np.full_like(gt, 255)),
            ]
            for (method, setting, sp), folder in pred_dirs.items():
                path = folder / f"{sample.stem}.png"
                if sp != split or not path.is_file():
                    continue
                pred = read_mask(path)
                r = next(
                    (
                        x
                        for x in results
                        if x["method"] == method and x["split"] == split and (x["setting"] or "trimap-based") == setting
                    ),
                    None,
                )
                label = method if r is None or r["setting_label"] is None else f"{method} {r['column']}"
                sad = (r or {}).get("sad_per_image", {}).get(sample.stem)
                if sad is not None:
                    label += f"\nSAD {sad:.2f}"
                top.append((label, pred))
                bottom.append((f"|error| {method}", _error_map(pred, gt)))
            out.append((f"{split} / {sample.stem}", make_grid([top, bottom], height)))
    return out


# ------------------------------------------------------------------------------------------- writing


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#222;
padding:0 1em}
h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}h3{margin-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0 1.2em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
.caption{color:#555;font-size:.85em;max-width:60em}.statement{padding:.6em 1em;border-left:4px solid #888;
background:#f7f7f7}.good{border-color:#2a8}.bad{border-color:#c44}
img{max-width:100%;border:1px solid #ddd}figure{margin:1em 0}figcaption{font-size:.85em;color:#555}
"""


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _csv(results: list[dict]) -> str:
    keys = sorted({k for r in results for k in r["metrics"]})
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    base = [
        "method",
        "type",
        "kind",
        "setting",
        "column",
        "split",
        "images",
        "params",
        "seconds_per_image",
        "train_seconds",
        "train_steps",
    ]
    writer.writerow(base + keys)
    for r in results:
        writer.writerow(
            [r.get(k) if r.get(k) is not None else "" for k in base]
            + [repr(r["metrics"][k]) if k in r["metrics"] else "" for k in keys]
        )
    return buf.getvalue()


def _figures(cfg: BenchmarkConfig, results: list[dict], curves: dict, dataset: P3M10k, pred_dirs: dict) -> list[Figure]:
    """The SAD chart, the training curves and the sample grids, encoded."""
    figures: list[Figure] = []
    chart = sad_chart(cfg, results)
    if chart:
        caption = (
            "Whole-image SAD (P3M protocol) per method and test set, means over the test images. The trimap-based "
            "methods are given the test trimap (known foreground and background): not comparable with the "
            "trimap-free networks, which get the image alone."
        )
        figures.append(("sad_chart.png", caption, chart, "image/png"))
    curve = curves_chart(curves)
    if curve:
        figures.append(("training_curves.png", "Training loss of every trained method.", curve, "image/png"))
    for i, (label, grid) in enumerate(grids(cfg, results, dataset, pred_dirs)):
        figures.append(
            (
                f"grid_{i:02d}.jpg",
                f"Sample {label} (the first test images by name, not chosen by result): input, ground truth and "
                "each method's alpha with its SAD on this image; trimap and |error| maps below.",
                encode_image(grid, "jpg", quality=90),
                "image/jpeg",
            )
        )
    return figures


def _payload(cfg: BenchmarkConfig, results: list[dict], comparison: dict, seconds: float) -> dict[str, Any]:
    """results.json: the config, every result row, the comparison and the published numbers shown beside them."""
    return {
        "name": cfg.name,
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "seconds": seconds,
        "config": dataclasses.asdict(cfg),
        "results": results,
        "comparison": comparison,
        "published": {
            "trimap_free_P3M-500-P": published.TRIMAP_FREE,
            "trimap_based_P3M-500-P": published.TRIMAP_BASED,
            "p3m_net_r34_ppt": published.P3M_NET_PPT,
            "sources": [published.SOURCE_TRIMAP_FREE, published.SOURCE_TRIMAP_BASED, published.SOURCE_PPT],
        },
    }


def is_synthetic(dataset: P3M10k) -> bool:
    """Whether the dataset was drawn by `p3m synth` (its meta file is in the root) rather than the real P3M-10k."""
    return (Path(dataset.root) / SYNTH_META_FILE).is_file()


def sizes_of_test_images(cfg: BenchmarkConfig, dataset: P3M10k) -> str:
    """'192x192 px' or 'from 640x480 to 2048x1536 px' (W x H, smallest and largest area) over the test images."""
    sizes = set()
    for split in cfg.test_splits:
        for sample in dataset.split(split):
            try:
                sizes.add(image_size(sample.image))
            except P3MError:
                continue  # an unreadable image: reported by the prediction stage
    if not sizes:
        return ""
    (h0, w0), (h1, w1) = min(sizes, key=lambda s: s[0] * s[1]), max(sizes, key=lambda s: s[0] * s[1])
    return f"{w0}x{h0} px" if (h0, w0) == (h1, w1) else f"from {w0}x{h0} to {w1}x{h1} px"


def _intro(cfg: BenchmarkConfig, results: list[dict], dataset: P3M10k, seconds: float, sizes: str) -> str:
    train_seconds = sum({(r["method"], r["setting"]): r.get("train_seconds") or 0.0 for r in results}.values())
    kind = (
        "synthetic portraits drawn by `p3m synth` (not photographs; not comparable with published P3M-10k numbers)"
        if is_synthetic(dataset)
        else "a P3M-10k layout"
    )
    return (
        f"Dataset: `{dataset.root}`, {kind}; test images {sizes or 'unreadable'}. "
        f"Test sets: {', '.join(cfg.test_splits)}. Inference: strategy "
        f"{cfg.inference.strategy}"
        + (f" at r = {cfg.inference.ratio}" if cfg.inference.strategy == "resize" else "")
        + f", resize mode {cfg.inference.resize_mode}; alpha saved as floor(255 a). "
        f"Training time of the trained methods {train_seconds:.0f} s in total (as recorded when each stage "
        f"ran); this invocation took {seconds:.0f} s (finished stages are skipped)."
    )


PUBLISHED_TITLE = "Published on P3M-10k (not measured here; full-size photographs, not comparable with the above)"


def _md_figures(figures: list[Figure]) -> list[str]:
    return [f"![{cap}]({name})\n\n*{cap}*\n" for name, cap, _, _ in figures]


def _markdown(
    title: str, intro: str, statement: str, tables: list[Table], figures: list[Figure], sections: list[Section]
) -> str:
    md = [f"# {title}", "", intro, ""]
    for section in sections:
        md += [f"## {section.title}", "", section.text, "", *_md_figures(section.figures)]
    md += ["## P3M-Net vs BASIC", "", statement, "", "## Measured", ""]
    md += [t.markdown() for t in tables]
    md += ["## Figures", "", *_md_figures(figures)]
    md += [f"## {PUBLISHED_TITLE}", ""] + [t.markdown() for t in published_tables()]
    return "\n".join(md)


def _html_figures(figures: list[Figure]) -> list[str]:
    return [
        f"<figure><img src='{_data_uri(data, mime)}' alt='{html.escape(cap)}'>"
        f"<figcaption>{html.escape(cap)}</figcaption></figure>"
        for _name, cap, data, mime in figures
    ]


def _html(
    title: str, intro: str, comparison: dict, tables: list[Table], figures: list[Figure], sections: list[Section]
) -> str:
    """The self-contained page: inline CSS, figures as data URIs, no script."""
    verdicts = {r.get("verdict") for r in comparison.get("rows", [])}
    cls = "good" if comparison.get("all_better") else ("bad" if "BASIC lower" in verdicts else "")
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro).replace('`', '')}</p>"]
    for section in sections:
        body += [f"<h2>{html.escape(section.title)}</h2>", f"<p>{html.escape(section.text).replace('`', '')}</p>"]
        body += _html_figures(section.figures)
    body += [
        "<h2>P3M-Net vs BASIC</h2>",
        f"<p class='statement {cls}'>{html.escape(comparison['statement'])}</p>",
        "<h2>Measured</h2>",
    ]
    body += [t.html() for t in tables]
    body.append("<h2>Figures</h2>")
    body += _html_figures(figures)
    body.append(f"<h2>{html.escape(PUBLISHED_TITLE)}</h2>")
    body += [t.html() for t in published_tables()]
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )


def write_report(
    folder: Path,
    cfg: BenchmarkConfig,
    results: list[dict],
    comparison: dict,
    *,
    curves: dict,
    dataset: P3M10k,
    pred_dirs: dict,
    seconds: float,
    sections: list[Section] | tuple[Section, ...] = (),
) -> dict[str, Any]:
    """Write results.json, results.csv, report.md (+ PNG/JPEG figures) and report.html into `folder`; `sections`
    (e.g. the demo's real photos) come first."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sections = list(sections)
    title = cfg.report.title or f"PPT benchmark: {cfg.name}"
    sizes = sizes_of_test_images(cfg, dataset)
    tables = [main_table(cfg, results, real_p3m10k=not is_synthetic(dataset), sizes=sizes)]
    if any(r["kind"] == "trimap-based" for r in results):
        tables.append(trimap_table(cfg, results))
    tables += [detail_table(cfg, results), dim_table(cfg, results), efficiency_table(results, cfg.inference.device)]
    figures = _figures(cfg, results, curves, dataset, pred_dirs)
    extra = [f for section in sections for f in section.figures]
    clash = {f[0] for f in figures} & {f[0] for f in extra}
    if clash:
        raise P3MError(f"report sections reuse the report's figure names: {', '.join(sorted(clash))}")
    for name, _, data, _ in figures + extra:
        write_bytes_atomic(folder / name, data)
    payload = json.dumps(_payload(cfg, results, comparison, seconds), indent=2, default=str, allow_nan=True)
    write_bytes_atomic(folder / "results.json", (payload + "\n").encode())
    write_bytes_atomic(folder / "results.csv", _csv(results).encode())
    intro = _intro(cfg, results, dataset, seconds, sizes)
    markdown = _markdown(title, intro, comparison["statement"], tables, figures, sections)
    write_bytes_atomic(folder / "report.md", markdown.encode())
    write_bytes_atomic(folder / "report.html", _html(title, intro, comparison, tables, figures, sections).encode())
    return {
        "html": folder / "report.html",
        "markdown": folder / "report.md",
        "json": folder / "results.json",
        "csv": folder / "results.csv",
        "table_markdown": tables[0].markdown(),
        "figures": [folder / f[0] for f in figures],
    }
