"""Model side: networks and registry, synthetic world, trainer, torch->ONNX->TensorRT, verification."""
