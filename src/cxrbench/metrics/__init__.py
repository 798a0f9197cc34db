"""Metrics: each a registered class that declares the target kinds it scores, its direction and display scale.

Built-ins are listed in `registry.yaml` (`metrics:`); a package adds its own through the `cxrbench.metrics` entry
point. Point estimates come from scikit-learn / scipy; a metric may add a form vectorised over bootstrap weights.
"""
