"""Evaluations: what is measured on a prepared study once an encoder's features are cached.

Each evaluation plugs into the one orchestration path (`cxrbench.runs.pipeline.evaluate`): it checks what it can
before any data is read, may adapt the study (e.g. pick the targets it scores), says which features it needs, then
evaluates one encoder's features; run-writing ones hand their result to the shared run steps (`evaluations.runs`).
None subclasses another.

- `probe`: heads trained on binary, multiclass and regression targets (`cxrbench run`);
- `segmentation`: decoders trained on patch grids for mask targets (`cxrbench run` on a segmentation benchmark);
- `localisation`: attention maps against radiologists' boxes (`cxrbench explain`).
"""

from __future__ import annotations


def run_evaluation(benchmark: str) -> type:
    """The evaluation `cxrbench run` makes of a benchmark: the one its targets' kinds name (`TargetKind.evaluation`:
    segmentation for masks, probes otherwise); a benchmark mixing them is refused by that evaluation's check."""
    from cxrbench.evaluations.probe import ProbeEvaluation
    from cxrbench.evaluations.segmentation import SegmentationEvaluation
    from cxrbench.registry import registry

    spec = registry().get("benchmarks", benchmark).spec
    evaluations = {"probe": ProbeEvaluation, "segmentation": SegmentationEvaluation}
    named = [t.target_kind.evaluation for t in spec.targets]
    return evaluations[next((name for name in named if name != "probe"), "probe")]
