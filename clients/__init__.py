"""Torch-free clients: gRPC client library, batch video processing, load-test harness."""
