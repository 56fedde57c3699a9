"""Inference: user images -> MNIST-style 28x28 -> Predictor.

Submodules are imported on use; ``image_io`` and ``preprocess`` need only numpy and
Pillow, so the ONNX Runtime path can run without torch. The constants below are here
so that the CLI can offer them as choices without importing any of that.
"""

# What runs the model: auto (ONNX Runtime when installed and it matches PyTorch, else PyTorch),
# PyTorch, or ONNX Runtime.
BACKENDS = ("auto", "torch", "onnx")
EXPORT_FORMATS = ("onnx", "torchscript")  # what ``export`` writes
