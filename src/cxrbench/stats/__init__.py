"""Metrics, seed aggregation and patient-clustered bootstrap confidence intervals."""
