"""Dataset layer: P3M-10k on disk (`p3m10k`), trimaps (`trimap`) and the embedded synthetic set (`synth`)."""

from __future__ import annotations

from p3m.data.p3m10k import SPLITS, P3M10k, Sample, open_dataset, summarize
from p3m.data.synth import Portrait, SynthConfig, generate_dataset, render_portrait
from p3m.data.trimap import kernel_size_for_test_split, random_trimap, trimap_from_alpha

__all__ = [
    "SPLITS",
    "P3M10k",
    "Portrait",
    "Sample",
    "SynthConfig",
    "generate_dataset",
    "kernel_size_for_test_split",
    "open_dataset",
    "random_trimap",
    "render_portrait",
    "summarize",
    "trimap_from_alpha",
]
