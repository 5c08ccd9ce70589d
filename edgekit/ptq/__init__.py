"""ONNX-side post-training quantization: the choice of calibration method and accuracy-aware FP32 fallback."""
