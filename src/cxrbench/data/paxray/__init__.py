"""PAXRay++ (Seibold et al. 2023): projected CT anatomy classes as COCO-RLE masks."""
