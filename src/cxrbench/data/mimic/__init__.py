"""MIMIC-CXR-JPG (cxr) with MIMIC-IV demographics (iv), and the MIMIC-CXR lung masks and zones (lungs)."""
