"""Inference: backends (PyTorch, ONNX Runtime) behind one forward, and `graftwork.load`."""
