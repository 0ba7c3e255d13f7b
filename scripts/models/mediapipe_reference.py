"""Person masks from the mediapipe wheel's own selfie-segmentation graph, for 256 x 256 RGB
images (so the graph's resize is the identity and its mask is the model's raw output).

Usage (in a venv with the mediapipe wheel): python mediapipe_reference.py IN.npy OUT.npy
IN: uint8 [n, 256, 256, 3]; OUT: float32 [n, 256, 256].
"""

import sys

import numpy as np
from mediapipe.python.solutions import selfie_segmentation

images = np.load(sys.argv[1])
masks = []
for image in images:
    with selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
        masks.append(seg.process(np.ascontiguousarray(image)).segmentation_mask)
np.save(sys.argv[2], np.stack(masks).astype(np.float32))
