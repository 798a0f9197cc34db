"""Features computed once per (encoder, weights, preprocessing, request) and cached on disk."""
