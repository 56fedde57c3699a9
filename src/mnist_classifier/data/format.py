"""What an MNIST sample is: a square greyscale image and one of ten digit classes.

The one home of these facts for every layer; it imports nothing (not torch), so
the ONNX Runtime path can use it too.
"""

from __future__ import annotations

IMAGE_SIDE = 28  # pixels: MNIST images are IMAGE_SIDE x IMAGE_SIDE, white ink on black
CLASS_NAMES: tuple[str, ...] = tuple(str(d) for d in range(10))  # output index -> digit
NUM_CLASSES = len(CLASS_NAMES)
