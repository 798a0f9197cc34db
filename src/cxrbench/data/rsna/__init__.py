"""RSNA Pneumonia Detection Challenge (2018): pneumonia labels of NIH ChestX-ray14 images."""
