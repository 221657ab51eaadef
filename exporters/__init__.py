"""Model side (torch), in the order a network travels: ``networks`` (architectures and their
registry) -> ``training`` (the trainer of the default weights, on the synthetic ``world``) ->
``weights`` (the shipped checkpoints) -> ``evaluation`` (torch-free metrics, torch or ONNX Runtime
predictor) -> ``export`` (torch -> ONNX -> TensorRT, bring-your-own ONNX, verification).

Nothing on the serving or client side imports this package.
"""
