"""VinDr-CXR (Nguyen et al., Scientific Data 2022) with its boxes, and VinDr-RibCXR's rib polygons."""
