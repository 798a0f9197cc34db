"""SIIM-ACR Pneumothorax Segmentation (Kaggle 2019): pneumothorax masks in relative run-length encoding."""
