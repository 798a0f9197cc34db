"""Heads trained on cached features: they see arrays and labels, never files or models."""
