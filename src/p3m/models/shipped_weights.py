"""Where the shipped converted networks live (MediaPipe ports, with their licence texts and NOTICE): paths only,
torch-free, so the model folder can name the built-in route's weights without importing torch."""

from __future__ import annotations

from pathlib import Path

__all__ = ["SELFIE_WEIGHTS", "WEIGHTS_DIR", "selfie_weights_path"]

WEIGHTS_DIR = Path(__file__).with_name("weights")
#: The selfie segmentation variants: "general" 256x256, "landscape" 144x256.
SELFIE_WEIGHTS = {
    "general": "selfie_segmentation.safetensors",
    "landscape": "selfie_segmentation_landscape.safetensors",
}


def selfie_weights_path(variant: str = "general") -> Path:
    """The shipped safetensors file of a selfie segmentation variant (`SELFIE_WEIGHTS`)."""
    return WEIGHTS_DIR / SELFIE_WEIGHTS[variant]
