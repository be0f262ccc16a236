"""Write the stored MediaPipe outputs that tests/test_selfie.py checks the PyTorch port against.

Run once by a maintainer in a separate environment (MediaPipe needs numpy<2; p3m never depends on it):

    python -m venv /tmp/mp && /tmp/mp/bin/pip install --no-deps mediapipe==0.10.21
    /tmp/mp/bin/pip install "numpy<2" "protobuf<5" absl-py attrs flatbuffers matplotlib "opencv-contrib-python<4.11"
    /tmp/mp/bin/python tools/selfie_reference_output.py tests/data

It runs each tests/data/selfie_<variant>_input.png (an RGB image at the model's input size, so MediaPipe's
pre- and post-processing resize nothing) through MediaPipe's ImageSegmenter task with the model files of the
mediapipe wheel (same weights as the npm package p3m converts), and writes the confidence mask as a 16-bit PNG
`selfie_<variant>_mediapipe.png` (value / 65535; quantisation <= 7.7e-6).
"""

import sys
from pathlib import Path

import cv2
import mediapipe as mp
import numpy as np
from mediapipe.tasks.python import BaseOptions, vision

MODELS = {"general": "selfie_segmentation.tflite", "landscape": "selfie_segmentation_landscape.tflite"}


def main(folder: str) -> None:
    models = Path(mp.__file__).parent / "modules" / "selfie_segmentation"
    for variant, model in MODELS.items():
        rgb = cv2.cvtColor(cv2.imread(str(Path(folder) / f"selfie_{variant}_input.png")), cv2.COLOR_BGR2RGB)
        options = vision.ImageSegmenterOptions(
            base_options=BaseOptions(model_asset_path=str(models / model)),
            output_confidence_masks=True,
            output_category_mask=False,
        )
        with vision.ImageSegmenter.create_from_options(options) as segmenter:
            result = segmenter.segment(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb)))
        mask = result.confidence_masks[0].numpy_view()
        cv2.imwrite(
            str(Path(folder) / f"selfie_{variant}_mediapipe.png"),
            np.rint(np.clip(mask, 0, 1) * 65535).astype(np.uint16),
        )


if __name__ == "__main__":
    main(sys.argv[1])
