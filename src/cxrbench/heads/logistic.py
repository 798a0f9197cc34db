"""scikit-learn logistic regression per task on standardised global embeddings, C chosen on validation.

Each task gets its own L2-regularised model (lbfgs); rows with an unknown label are left out. The inverse
regularisation C is swept and chosen per task by the validation metric (DINOv2's and RAD-DINO's
demographic probes use scikit-learn's LogisticRegression the same way).
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from cxrbench.heads.base import FeatureSet, FitReport, Head
from cxrbench.progress import Progress, SilentProgress
from cxrbench.stats.metrics import task_metric


class LogisticHead(Head):
    defaults = {"C": [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0], "max_iter": 1000, "selection_metric": "auprc"}

    def fit(self, train: FeatureSet, val: FeatureSet, seed: int, progress: Progress = SilentProgress()) -> FitReport:
        self.scaler = StandardScaler().fit((train.standardise_on or train).global_)
        x_train, x_val = self.scaler.transform(train.global_), self.scaler.transform(val.global_) if len(val.labels) else None
        metric = self.params["selection_metric"]
        self.models, chosen, table = [], {}, []
        advance = progress.task(f"{self.spec.name} head, seed {seed}: tasks", train.labels.shape[1], transient=True)
        for t in range(train.labels.shape[1]):
            known = ~np.isnan(train.labels[:, t])
            y = train.labels[known, t]
            candidates = {}
            for c in self.params["C"]:
                model = LogisticRegression(C=float(c), max_iter=int(self.params["max_iter"]), random_state=seed)
                candidates[float(c)] = model.fit(x_train[known], y)
            if x_val is None:
                best = max(candidates)
            else:
                scores = {c: task_metric(metric, val.labels[:, t], m.predict_proba(x_val)[:, 1]) for c, m in candidates.items()}
                table += [{"config": f"task{t}-C{c:g}", "task_index": t, "C": c, f"val_{metric}": s} for c, s in scores.items()]
                finite = {c: s for c, s in scores.items() if np.isfinite(s)}
                best = max(finite, key=lambda c: (finite[c], -c)) if finite else max(candidates)
            self.models.append(candidates[best])
            chosen[f"C[{t}]"] = best
            advance(1)
        return FitReport(chosen=chosen, table=table)

    def predict(self, features: FeatureSet) -> np.ndarray:
        x = self.scaler.transform(features.global_)
        return np.stack([m.predict_proba(x)[:, 1] for m in self.models], axis=1)
