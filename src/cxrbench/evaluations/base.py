"""The evaluation seam (after CLIP_benchmark's per-task `evaluate()`): the orchestrator calls these, in order.

Evaluations compose; none subclasses another. Each takes the same `RunOptions`, trains and predicts in its own
way and hands back an `EvaluationResult` (its long-form predictions, the pieces of metrics.json only it knows, and
its extra files); the shared run steps (`evaluations.runs`: planning, identity, resume, summary, metrics.json,
tables) turn that into a run folder through the results store.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from cxrbench.encoders.base import Encoder, FeatureRequest
from cxrbench.errors import DataError
from cxrbench.features.extract import EncoderFeatures, ExtractionSettings
from cxrbench.heads.base import FitReport
from cxrbench.progress import Progress
from cxrbench.specs import BenchmarkSpec
from cxrbench.study import Study


class Evaluation(Protocol):
    def check(self, spec: BenchmarkSpec) -> None:
        """Everything that can fail before data is read (heads and their parameters for the targets' kinds)."""

    def prepare(self, study: Study, progress: Progress) -> Study:
        """The study this evaluation scores (the same, or with other targets)."""

    def plan(self, study: Study, encoder: Encoder, settings: ExtractionSettings) -> bool:
        """Checks for one encoder before its features are computed (e.g. a stored run of other settings). False when
        every run it would write is stored already with these settings (resuming): then no feature is computed and
        `evaluate` receives None and returns the stored results."""

    def request(self, study: Study, encoder: Encoder) -> FeatureRequest:
        """The cached features it needs."""

    def evaluate(self, study: Study, features: EncoderFeatures | None, settings: ExtractionSettings, progress: Progress) -> list[Any]:
        """Evaluate one encoder and write its results; returns one result per run folder."""


@dataclass
class RunOptions:
    """What every run-writing evaluation is told by the command line (the same fields, in the same order, for a
    probe and a segmentation run, so that `run_evaluation(benchmark)(...)` builds either)."""

    out: Path
    head: str | None = None  # None: the benchmark's default head
    head_params: dict[str, Any] = field(default_factory=dict)
    tag: str | None = None  # names a variant run (HEAD_TAG/), e.g. other weights or head parameters
    overwrite: bool = False  # replace a stored run of other settings
    metrics: list[str] = field(default_factory=list)  # scored besides the benchmark's own (e.g. a plugin's)
    resume: bool = False  # keep a stored run of the same settings instead of training it again (`cxrbench reproduce`)

    def __post_init__(self) -> None:
        if self.tag is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*", self.tag):
            raise DataError(f"--tag {self.tag!r}: use letters, digits, '.' and '-' (it names a results folder).")


@dataclass
class EvaluationResult:
    """What an evaluation's training and prediction produced for one run, before the shared steps summarise and
    write it: the predictions, the pieces of metrics.json that only the evaluation knows, and its extra files."""

    predictions: pd.DataFrame | None = None  # long form, one row per test item x target x seed
    reports: dict = field(default_factory=dict)  # seed -> group -> what the head chose and its final losses
    selections: list[dict] = field(default_factory=list)  # one row per configuration a head tried (selection.csv)
    n_train: dict = field(default_factory=dict)  # seed -> training images
    thresholds: dict = field(default_factory=dict)  # seed -> binary target -> decision threshold chosen on validation
    files: dict[str, Callable[[Path], None]] = field(default_factory=dict)  # further files of the run folder

    def record(self, seed: int, group: str, report: FitReport, source=None) -> None:
        """Keep what a head reported for one seed and target group."""
        chosen = report.chosen if source is None else {**report.chosen, **source.describe()}
        self.reports[seed][group] = {"chosen": chosen, "final_train_loss": _last(report.history.get("train_loss")),
                                     "final_val_loss": _last(report.history.get("val_loss"))}
        self.selections += [{"seed": seed, "group": group, **row} for row in report.table]


@dataclass
class RunResult:
    encoder: str
    head: str
    folder: Path
    metrics: dict
    encoded: int
    reused: int
    tasks: tuple[str, ...]
    resumed: bool = False  # stored already with the same settings: kept, nothing trained (RunOptions.resume)


def _last(values: list[float] | None) -> float | None:
    return None if not values or not np.isfinite(values[-1]) else float(values[-1])
