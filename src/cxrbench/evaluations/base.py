"""The evaluation seam (after CLIP_benchmark's per-task `evaluate()`): the orchestrator calls these, in order."""

from __future__ import annotations

from typing import Any, Protocol

from cxrbench.encoders.base import Encoder, FeatureRequest
from cxrbench.features.extract import EncoderFeatures, ExtractionSettings
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
