"""Inference: user images -> MNIST-style 28x28 -> Predictor.

Submodules are imported on use; ``image_io`` and ``preprocess`` need only numpy and
Pillow, so the ONNX Runtime path can run without torch. The constants below are here
so that the CLI can offer them as choices without importing any of that.
"""

BACKENDS = ("torch", "onnx")  # what runs the model: PyTorch or ONNX Runtime
EXPORT_FORMATS = ("onnx", "torchscript")  # what ``export`` writes
