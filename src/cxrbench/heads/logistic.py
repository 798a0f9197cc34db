"""scikit-learn logistic regression on global embeddings (standardised unless `standardize: false`), C chosen on
validation.

Each binary target gets its own L2-regularised model (lbfgs); a multiclass target one multinomial model over its
classes. Rows with an unknown label are left out. The inverse regularisation C is swept and chosen per target by
the validation metric (DINOv2's and RAD-DINO's demographic probes use scikit-learn's LogisticRegression the same
way). Regression targets are not its job: the linear, MLP or kNN heads regress.

`standardize: false` feeds the raw embeddings, as scikit-learn's own defaults do (no scaler): `logistic-default`
uses it so that "default settings" (RAD-DINO, Table 5) means exactly `LogisticRegression()` on the features.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from cxrbench.heads.base import BatchSource, FeatureSet, FitReport, Head, cached_only
from cxrbench.heads.selection import ranking, validation_score
from cxrbench.progress import Progress, SilentProgress
from cxrbench.targets import target_kind


class LogisticHead(Head):
    kinds = ("binary", "multiclass")
    defaults = {"C": [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0], "max_iter": 1000, "standardize": True,
                "selection_metric": "auto"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.params["standardize"] is True:  # the default is left out: runs stored before the option keep their identity
            del self.params["standardize"]

    def fit(self, train: FeatureSet, val: FeatureSet, seed: int, progress: Progress = SilentProgress(),
            source: BatchSource | None = None) -> FitReport:
        cached_only(self, source)
        standardize = self.params.get("standardize", True)
        self.scaler = StandardScaler().fit((train.standardise_on or train).global_) if standardize else None
        x_train, x_val = self._inputs(train.global_), self._inputs(val.global_) if len(val.labels) else None
        metric = self.selection
        self._classes = train.labels.shape[1]
        # binary: one column per target; multiclass (one-hot): the class index of the one-hot rows
        one_hot = target_kind(self.kind).one_hot
        columns = [train.labels] if one_hot else [train.labels[:, [t]] for t in range(train.labels.shape[1])]
        val_columns = [val.labels] if one_hot else [val.labels[:, [t]] for t in range(val.labels.shape[1])]
        self.models, chosen, table = [], {}, []
        unconverged = fits = 0
        advance = progress.task(f"{self.spec.name} head, seed {seed}: tasks", len(columns), transient=True)
        for t, (labels, val_labels) in enumerate(zip(columns, val_columns)):
            known = ~np.isnan(labels).any(axis=1)
            y = labels[known].argmax(axis=1) if one_hot else labels[known, 0]
            candidates = {}
            for c in self.params["C"]:
                model = LogisticRegression(C=float(c), max_iter=int(self.params["max_iter"]), random_state=seed)
                with warnings.catch_warnings():  # counted below and said once, not a warning per fit
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    candidates[float(c)] = model.fit(x_train[known], y)
                unconverged += int(np.max(model.n_iter_) >= model.max_iter)
                fits += 1
            if x_val is None or metric is None:
                best = max(candidates)
            else:
                scores = {c: validation_score(metric, self.kind, val_labels, self._probabilities(m, x_val))
                          for c, m in candidates.items()}
                table += [{"config": f"task{t}-C{c:g}", "task_index": t, "C": c, f"val_{metric.name}": s} for c, s in scores.items()]
                finite = {c: s for c, s in scores.items() if np.isfinite(s)}
                best = max(finite, key=lambda c: (ranking(metric, finite[c]), -c)) if finite else max(candidates)
            self.models.append(candidates[best])
            chosen[f"C[{t}]"] = best
            advance(1)
        if unconverged:
            progress.note(f"{self.spec.name}, seed {seed}: {unconverged} of {fits} logistic fits stopped at max_iter="
                          f"{self.params['max_iter']} before lbfgs converged (the head's setting; scikit-learn's default "
                          "is 100); their coefficients are used as they are.")
        return FitReport(chosen=chosen, table=table)

    def _probabilities(self, model: LogisticRegression, x: np.ndarray) -> np.ndarray:
        """[N, 1] P(positive) for a binary target; [N, K] over every declared class for a multiclass one (a class
        the training split lacks gets probability 0)."""
        probabilities = model.predict_proba(x)
        if not target_kind(self.kind).one_hot:
            return probabilities[:, 1:2]
        out = np.zeros((len(x), self._classes))
        out[:, model.classes_.astype(int)] = probabilities
        return out

    def _inputs(self, x: np.ndarray) -> np.ndarray:
        """The model's inputs: standardised with training statistics, or the raw embeddings (sklearn's defaults)."""
        return self.scaler.transform(x) if self.scaler is not None else x

    def predict(self, features: FeatureSet) -> np.ndarray:
        x = self._inputs(features.global_)
        return np.concatenate([self._probabilities(m, x) for m in self.models], axis=1)
