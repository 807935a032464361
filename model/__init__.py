"""The STARK network: backbone, position encoding, transformer, heads, box ops, losses.

Plain PyTorch only: no Ray, no MLflow, no I/O beyond loading weight files.
"""
