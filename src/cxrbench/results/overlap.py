"""Pre-training overlap: is a benchmark in-distribution for an encoder?

An encoder pre-trained on the very dataset a benchmark's test images come from has seen that hospital's scanners,
population and label distribution (and, unless the split was held out, possibly the test images themselves).
Its numbers there are not comparable with an encoder that never saw the dataset, so tables flag such cells.
Adapters declare `pretraining_data`, benchmarks `source_datasets` (the same dataset ids, see README).
"""

from __future__ import annotations

from cxrbench.errors import CxrbenchError
from cxrbench.specs import BenchmarkSpec

MARK = "†"
LEGEND = (f"{MARK}: in-distribution: the encoder was pre-trained on this benchmark's source dataset "
          "(adapter `pretraining_data`, benchmark `source_datasets`).")


def pretraining_overlap(encoder: str, benchmark: BenchmarkSpec) -> tuple[str, ...]:
    """The datasets `encoder` was pre-trained on that `benchmark`'s test images come from; empty when none (or when
    the encoder is no longer registered, so nothing is known of it). A transfer benchmark's test images are its test
    benchmark's: an encoder pre-trained on the training benchmark only is not flagged (the heads, not the encoder,
    saw those labels)."""
    from cxrbench.registry import registry

    try:
        pretrained = registry().get("encoders", encoder).spec.pretraining_data
        tested = benchmark if benchmark.transfer is None else registry().get("benchmarks", benchmark.transfer.test).spec
    except CxrbenchError:
        return ()
    return tuple(d for d in tested.source_datasets if d in pretrained)
