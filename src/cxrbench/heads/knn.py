"""kNN on L2-normalised global embeddings (cosine similarity), with one of two scoring rules.

`rule: weighted` (default; DINOv2's kNN evaluation): the k nearest training samples vote with weight
exp(cosine / temperature); a binary task's score is the weighted fraction of positive votes, a multiclass target's
class probabilities are the weighted shares of each class (one-hot labels), a regression target's prediction is the
weighted mean of the neighbours' values.

`rule: mlknn` (ML-kNN, Zhang & Zhou, Pattern Recognition 2007; what the DINOv2-radiology paper used for
multi-label kNN): per label l, with smoothing s (`smoothing`, default 1 as in the paper),
  prior        P(H1) = (s + #positive training samples) / (2s + #training samples), P(H0) = 1 - P(H1);
  likelihoods  C(x) = number of positives for l among the k nearest *other* training samples of x (leave-one-out),
               c1[j] / c0[j] = number of positive / negative training samples with C = j (j = 0..k),
               P(E_j | H1) = (s + c1[j]) / (s (k+1) + sum c1), likewise for H0;
  score        for a query with C = j among its k nearest training samples, the posterior
               P(H1) P(E_j|H1) / (P(H1) P(E_j|H1) + P(H0) P(E_j|H0)).
Labels are binary (> 0.5 counts as positive); `temperature` is unused by this rule, which scores binary targets only.

Shared by both rules:
* Unknown labels (NaN): each task is scored separately among the training rows whose label for that task is
  known (its counts, its prior, its neighbours), so a task with unknown labels equals the head fitted on its
  labelled rows alone. Tasks with the same labelled rows share one top-k.
* The expensive part, the top-k neighbours of every query among the training features, is computed once for
  the largest k; every k of the grid is read off it (for ML-kNN via cumulative sums of the neighbours' labels).
  ML-kNN also needs one leave-one-out top-k of the training set over itself, done the same way once in `fit`.
* k is chosen on the validation split (ties go to the smaller k). `select_on: test` chooses it on the test split
  instead, which is what the DINOv2-radiology paper did (Table 4 reports the best result over its k grid on the
  test set); the evaluation then hands the head the test split as its selection split, and every table marks such
  a run "k selected on test": its number is optimistic, comparable only with the paper's. ML-kNN caps k per task at (labelled
  training rows - 1), so that training samples (leave-one-out) and queries count the same number of neighbours.
* Ties in similarity: the neighbour set is what `torch.topk` returns; when several training samples tie at the
  k-th similarity, which of them are counted is unspecified (in practice only exact duplicate embeddings tie).
  Leave-one-out excludes a sample by its index, not by its similarity: an exact duplicate of a training sample
  does count as its neighbour. ML-kNN posteriors are computed in exact integer arithmetic and rounded once,
  so mathematically equal scores are equal floats and the metrics treat them as ties.
* Arithmetic follows the features' precision: float64 features are compared in float64, anything else in
  float32 (cached features are float32).
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import numpy as np
import torch

from cxrbench.errors import SpecError
from cxrbench.heads.base import BatchSource, FeatureSet, FitReport, Head, cached_only
from cxrbench.heads.selection import ranking, validation_score
from cxrbench.progress import Progress, SilentProgress

RULES = ("weighted", "mlknn")
#: where k is chosen: the validation split (honest) or the test split (the DINOv2-radiology paper's Table 4)
SELECT_ON = ("val", "test")


def _normalise(x: np.ndarray) -> torch.Tensor:
    dtype = np.float64 if np.asarray(x).dtype == np.float64 else np.float32
    tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=dtype))
    return torch.nn.functional.normalize(tensor, dim=1)


def _task_groups(labels: torch.Tensor) -> list[tuple[torch.Tensor, list[int]]]:
    """Tasks grouped by their set of labelled training rows: [(known rows [N] bool, tasks)]."""
    groups: dict[bytes, tuple[torch.Tensor, list[int]]] = {}
    for t in range(labels.shape[1]):
        known = ~torch.isnan(labels[:, t])
        groups.setdefault(known.numpy().tobytes(), (known, []))[1].append(t)
    return list(groups.values())


class KNNHead(Head):
    work = "heavy"  # a [queries x training images] similarity matrix per chunk
    defaults = {"k": [10, 20, 100, 200], "rule": "weighted", "temperature": 0.07, "smoothing": 1.0,
                "selection_metric": "auto", "select_on": "val", "chunk": 1024}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.params["rule"] not in RULES:
            raise SpecError(f"Head '{self.spec.name}': rule '{self.params['rule']}' is not one of {', '.join(RULES)}.")
        if self.params["rule"] == "mlknn" and self.kind != "binary":
            raise SpecError(f"Head '{self.spec.name}': rule mlknn scores binary targets; {self.kind} targets use rule: "
                            "weighted (the neighbours' class shares or mean value).")
        if self.params["select_on"] not in SELECT_ON:
            raise SpecError(f"Head '{self.spec.name}': select_on must be val or test, not {self.params['select_on']!r}.")
        if self.params["select_on"] == "val":  # the default is left out: runs stored before the option keep their identity
            del self.params["select_on"]
        if not float(self.params["smoothing"]) > 0:
            raise SpecError(f"Head '{self.spec.name}': smoothing must be > 0, not {self.params['smoothing']}.")

    def fit(self, train: FeatureSet, val: FeatureSet, seed: int, progress: Progress = SilentProgress(),
            source: BatchSource | None = None) -> FitReport:
        cached_only(self, source)
        self._train = _normalise(train.global_)
        self._labels = torch.from_numpy(train.labels.astype(np.float32))
        self._groups = _task_groups(self._labels)
        mlknn = self.params["rule"] == "mlknn"
        cap = max(len(self._train) - 1, 1) if mlknn else len(self._train)
        ks = sorted({min(int(k), cap) for k in self.params["k"]})
        self._tables: dict[int, np.ndarray] = {}
        if mlknn:
            self._tables = self._mlknn_tables(ks)
        if len(val.labels) == 0 or len(ks) == 1 or self.selection is None:
            self.k = ks[-1]
            return FitReport(chosen={"k": self.k})
        scores = self._scores_for_all_k(val.global_, ks)
        metric = self.selection
        by_k = {k: validation_score(metric, self.kind, val.labels, s) for k, s in scores.items()}
        self.k = max(ks, key=lambda k: (ranking(metric, by_k[k]), -k))  # ties go to the smaller k
        return FitReport(chosen={"k": self.k},
                         table=[{"config": f"k{k}", "k": k, f"val_{metric.name}": by_k[k]} for k in ks])

    def _scores_for_all_k(self, features: np.ndarray, ks: list[int]) -> dict[int, np.ndarray]:
        if self.params["rule"] == "mlknn":
            return self._mlknn_scores(features, ks)
        query = _normalise(features).to(self._train.dtype)
        out = {k: np.full((len(query), self._labels.shape[1]), np.nan) for k in ks}
        labels = torch.nan_to_num(self._labels)
        temperature = float(self.params["temperature"])
        for start in range(0, len(query), int(self.params["chunk"])):
            similarity = query[start : start + int(self.params["chunk"])] @ self._train.T
            rows = slice(start, start + len(similarity))
            for known, tasks in self._groups:
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

    # ML-kNN -------------------------------------------------------------------------------------------------

    def _positive_counts(self, query: torch.Tensor, ks: list[int], leave_one_out: bool
                         ) -> Iterator[tuple[np.ndarray, list[int], dict[int, np.ndarray]]]:
        """Per chunk and task group: (query rows, tasks, {k: C [rows, tasks]}), C = positives among the k
        nearest labelled training rows (k capped at labelled rows - 1). With `leave_one_out` the query is the
        training set itself: each row skips itself, and only rows labelled for the group are counted."""
        chunk = int(self.params["chunk"])
        positive = [self._labels[:, tasks] > 0.5 for _, tasks in self._groups]  # NaN -> False
        for start in range(0, len(query), chunk):
            similarity = query[start : start + chunk] @ self._train.T
            rows = torch.arange(start, start + len(similarity))
            if leave_one_out:
                similarity[torch.arange(len(rows)), rows] = float("-inf")
            for (known, tasks), group_positive in zip(self._groups, positive):
                cap = int(known.sum()) - 1
                keep = known[rows] if leave_one_out else torch.ones(len(rows), dtype=torch.bool)
                if cap < 0 or not bool(keep.any()):
                    continue
                masked = similarity[keep].masked_fill(~known, float("-inf"))
                _, index = masked.topk(min(max(ks), cap), dim=1)  # one top-k for every k
                cumulative = torch.cumsum(group_positive[index], dim=1, dtype=torch.int32)  # [n, K, tasks]
                none = torch.zeros(len(index), len(tasks), dtype=torch.int32)  # k capped at 0: a single labelled row
                counts = {k: (cumulative[:, min(k, cap) - 1] if min(k, cap) else none).numpy() for k in ks}
                yield rows[keep].numpy(), tasks, counts

    def _mlknn_tables(self, ks: list[int]) -> dict[int, np.ndarray]:
        """{k: posterior P(H1 | C = j) [T, k+1]} from the leave-one-out counts of the training set (NaN for
        tasks without labelled rows, and for j above the task's capped k)."""
        n_rows, n_tasks = self._labels.shape
        sp, sq = Fraction(float(self.params["smoothing"])).as_integer_ratio()  # smoothing s = sp / sq exactly
        counts = {k: np.zeros((n_rows, n_tasks), np.int64) for k in ks}
        for rows, tasks, by_k in self._positive_counts(self._train, ks, leave_one_out=True):
            for k, c in by_k.items():
                counts[k][np.ix_(rows, tasks)] = c
        positive = (self._labels > 0.5).numpy()
        tables = {}
        for k in ks:
            table = np.full((n_tasks, k + 1), np.nan)
            for known_t, tasks in self._groups:
                known = known_t.numpy()
                n = int(known.sum())
                if n == 0:
                    continue
                kk = min(k, n - 1)
                y = positive[known][:, tasks]  # [n, tasks] bool
                bins = counts[k][known][:, tasks] + (kk + 1) * np.arange(len(tasks))  # one bin range per task
                c1 = np.bincount(bins[y], minlength=(kk + 1) * len(tasks)).reshape(len(tasks), kk + 1)
                c0 = np.bincount(bins[~y], minlength=(kk + 1) * len(tasks)).reshape(len(tasks), kk + 1)
                # P(H1) P(E_j|H1) and P(H0) P(E_j|H0) times their common factor sq^3 (2s + n) (s(k+1) + n1) (s(k+1) + n0)
                # with s = sp/sq: exact Python integers, and int / int is correctly rounded, so the posterior is rounded
                # once and mathematically equal posteriors (e.g. c1/c0 = 0/1 and 1/3) are bit-identical floats;
                # AUPRC/AUROC then see them as the ties they are rather than ordered by rounding noise.
                n1 = y.sum(0)[:, None].astype(object)
                n0 = n - n1
                c1, c0 = c1.astype(object), c0.astype(object)
                joint1 = (sp + sq * n1) * (sp + sq * c1) * (sp * (kk + 1) + sq * n0)
                joint0 = (sp + sq * n0) * (sp + sq * c0) * (sp * (kk + 1) + sq * n1)
                table[tasks, : kk + 1] = (joint1 / (joint1 + joint0)).astype(np.float64)
            tables[k] = table
        return tables

    def _mlknn_scores(self, features: np.ndarray, ks: list[int]) -> dict[int, np.ndarray]:
        missing = [k for k in ks if k not in self._tables]
        if missing:
            self._tables.update(self._mlknn_tables(missing))
        query = _normalise(features).to(self._train.dtype)
        out = {k: np.full((len(query), self._labels.shape[1]), np.nan) for k in ks}
        for rows, tasks, by_k in self._positive_counts(query, ks, leave_one_out=False):
            for k, c in by_k.items():
                out[k][np.ix_(rows, tasks)] = self._tables[k][np.asarray(tasks)[None, :], c]
        return out

    def predict(self, features: FeatureSet) -> np.ndarray:
        return self._scores_for_all_k(features.global_, [self.k])[self.k]
