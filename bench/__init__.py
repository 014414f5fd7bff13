"""Benchmarks for hmt-stream: `make bench` (python -m bench) runs the CPU suite; bench/gpu.py is for CUDA machines."""
