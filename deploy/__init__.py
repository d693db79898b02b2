"""Serving trained networks outside MXNet: ONNX export (`deploy.onnx_export`)."""
