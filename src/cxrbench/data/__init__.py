"""Datasets on disk -> samples (image path, labels with NaN for unknown, patient id, split)."""
