"""MIMIC-CXR-JPG (cxr) with MIMIC-IV demographics (iv), the MIMIC-CXR lung masks and zones (lungs), and the benchmarks
built on them: the CXR-LT long tail (long_tail), 5x1200 (five_by_1200) and prognosis from MIMIC-IV (prognosis)."""
