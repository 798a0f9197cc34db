"""Metrics, seed aggregation, patient-clustered bootstrap confidence intervals and paired comparisons of runs."""
