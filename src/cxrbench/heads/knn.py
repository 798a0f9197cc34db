"""kNN on L2-normalised global embeddings, DINOv2-style: neighbours vote with weight exp(cosine / T).

The expensive part, the top-k neighbours of every query among the training features, is computed once for
the largest k; every k of the grid is read off it. Multi-label: each task is voted separately (a per-label
kNN, as ML-kNN counts neighbours per label) among the training rows whose label for that task is known, so
a task with unknown labels equals a kNN fitted on its labelled rows; tasks with the same labelled rows share
one top-k. k is chosen on the validation split.
"""

from __future__ import annotations

import numpy as np
import torch

from cxrbench.heads.base import FeatureSet, FitReport, Head
from cxrbench.heads.selection import validation_score


def _normalise(x: np.ndarray) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return torch.nn.functional.normalize(tensor, dim=1)


class KNNHead(Head):
    defaults = {"k": [10, 20, 100, 200], "temperature": 0.07, "selection_metric": "auprc", "chunk": 1024}

    def fit(self, train: FeatureSet, val: FeatureSet, seed: int) -> FitReport:
        self._train = _normalise(train.global_)
        self._labels = torch.from_numpy(train.labels.astype(np.float32))
        ks = sorted({min(int(k), len(self._train)) for k in self.params["k"]})
        if len(val.labels) == 0 or len(ks) == 1:
            self.k = ks[-1]
            return FitReport(chosen={"k": self.k})
        scores = self._scores_for_all_k(val.global_, ks)
        metric = self.params["selection_metric"]
        by_k = {k: validation_score(metric, val.labels, s) for k, s in scores.items()}
        self.k = max(ks, key=lambda k: (by_k[k], -k))  # ties go to the smaller k
        return FitReport(chosen={"k": self.k}, history={f"val_{metric}": [by_k[k] for k in ks]})

    def _scores_for_all_k(self, features: np.ndarray, ks: list[int]) -> dict[int, np.ndarray]:
        query = _normalise(features)
        out = {k: np.full((len(query), self._labels.shape[1]), np.nan) for k in ks}
        groups: dict[bytes, tuple[torch.Tensor, list[int]]] = {}
        for t in range(self._labels.shape[1]):
            known = ~torch.isnan(self._labels[:, t])
            groups.setdefault(known.numpy().tobytes(), (known, []))[1].append(t)
        labels = torch.nan_to_num(self._labels)
        temperature = float(self.params["temperature"])
        for start in range(0, len(query), int(self.params["chunk"])):
            similarity = query[start : start + int(self.params["chunk"])] @ self._train.T
            rows = slice(start, start + len(similarity))
            for known, tasks in groups.values():
                available = int(known.sum())
                if available == 0:
                    continue
                masked = similarity.masked_fill(~known, float("-inf"))
                top, index = masked.topk(min(ks[-1], available), dim=1)  # one top-k for every k
                weights = torch.exp(top / temperature)
                votes = labels[index][:, :, tasks]
                for k in ks:
                    kk = min(k, available)
                    w = weights[:, :kk, None]
                    out[k][rows, tasks] = ((w * votes[:, :kk]).sum(1) / w.sum(1)).numpy()
        return out

    def predict(self, features: FeatureSet) -> np.ndarray:
        return self._scores_for_all_k(features.global_, [self.k])[self.k]
