"""Benchmarks built on MIMIC-CXR-JPG and MIMIC-IV: long tail (CXR-LT), 5x1200 and prognosis; loaders and synthetic writers."""
