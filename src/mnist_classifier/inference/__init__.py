"""Inference: user images -> MNIST-style 28x28 -> Predictor.

Submodules are imported on use; ``image_io`` and ``preprocess`` need only numpy and
Pillow, so the ONNX Runtime path can run without torch.
"""
