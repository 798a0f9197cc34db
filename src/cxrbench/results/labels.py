"""How a run is named for people: one place, used by every output (terminal, Markdown, CSV, LaTeX, comparisons,
plots, the report), so that a run that is not the published protocol can never lose its label on the way.

A run is named 'ENCODER (VARIANT) / HEAD [TAG]', where VARIANT lists only how it differs from the released encoder
on the released dataset: its weights ('random init', 'local weights'), its input size ('56 px', when not the
encoder's released size) and its data ('synthetic data'). CSV files carry VARIANT in a `variant` column (empty: the
published protocol). `RunVariant` is the same in structured form, for code that compares what a run is with what is
asked (`cxrbench reproduce`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

RANDOM, LOCAL, RELEASED = "random", "local", "released"
REAL, SYNTHETIC = "real", "synthetic"
RANDOM_INIT, LOCAL_WEIGHTS, SYNTHETIC_DATA = "random init", "local weights", "synthetic data"
#: Notes that still leave the released network on the released data (a local copy of the released checkpoint is how
#: several encoders are distributed): such a run may sit beside the paper's row and be differenced with it.
COMPARABLE_NOTES = frozenset({LOCAL_WEIGHTS})


@dataclass(frozen=True)
class RunVariant:
    """What kind of run this is: weights kind (released | random | local), input size in pixels (None: not
    recorded) and data kind (real | synthetic)."""

    weights: str
    image_size: int | None
    data: str

    def notes(self, released_size: int | None) -> tuple[str, ...]:
        """How the run differs from the published protocol, in words (`released_size`: the encoder's own)."""
        weights = {RANDOM: (RANDOM_INIT,), LOCAL: (LOCAL_WEIGHTS,)}.get(self.weights, ())
        other_size = None not in (self.image_size, released_size) and self.image_size != released_size
        size = (f"{self.image_size} px",) if other_size else ()
        return (*weights, *size, *((SYNTHETIC_DATA,) if self.data == SYNTHETIC else ()))

    def describe(self) -> str:
        """'a random-init run at 56 px on synthetic data': every part, for messages that set two runs side by side."""
        weights = {RANDOM: "a random-init", LOCAL: "a local-weights", RELEASED: "a released-weights"}[self.weights]
        size = f" at {self.image_size} px" if self.image_size is not None else ""
        return f"{weights} run{size} on {self.data} data"


def run_variant(identity: Mapping | None) -> RunVariant:
    """A run's kind from its `run_identity` (metrics.json): weights identities are 'random:seed=N' (random),
    'sha256:...' (a local file or folder), or a hub revision / 'none' (the encoder's released source)."""
    identity = identity or {}
    weights = str(identity.get("weights") or "")
    kind = RANDOM if weights.startswith("random") else LOCAL if weights.startswith("sha256:") else RELEASED
    size = (identity.get("preprocessing") or {}).get("size")
    return RunVariant(kind, int(size) if size is not None else None, SYNTHETIC if identity.get("synthetic_data") else REAL)


def released_size(encoder: str) -> int | None:
    """The input size in the encoder's adapter spec, or None for an encoder no longer registered."""
    from cxrbench.errors import CxrbenchError
    from cxrbench.registry import registry

    try:
        return registry().get("encoders", encoder).spec.preprocessing.size
    except CxrbenchError:
        return None


def variant_notes(encoder: str, identity: Mapping | None) -> tuple[str, ...]:
    """How a stored run differs from the published protocol: ('random init', '56 px', 'synthetic data')."""
    return run_variant(identity).notes(released_size(encoder))


def encoder_label(encoder: str, notes: Sequence[str] = ()) -> str:
    """The encoder's name with its variant in brackets: 'rad-dino (random init, 56 px)'."""
    return f"{encoder} ({', '.join(notes)})" if notes else encoder


SELECTED_ON_TEST = "selected on test"


def method_label(head: str, tag: str | None = None, selected_on_test: bool = False) -> str:
    """The head, with the run's tag when it has one ('linear [lr-sweep]') and a mark when it chose its settings on
    the test split ('knn [selected on test]'), so that such an optimistic number never passes unlabelled."""
    marks = [*([tag] if tag else []), *([SELECTED_ON_TEST] if selected_on_test else [])]
    return f"{head} [{'; '.join(marks)}]" if marks else head


def run_label(encoder: str, head: str, notes: Sequence[str] = (), tag: str | None = None) -> str:
    """'ENCODER (VARIANT) / HEAD [TAG]', e.g. 'rad-dino (random init, 56 px, synthetic data) / linear'. `head` may be
    a method label already ('linear [tag]'): give `tag` only with a bare head."""
    return f"{encoder_label(encoder, notes)} / {method_label(head, tag)}"


def variant_text(notes: Sequence[str]) -> str:
    """The `variant` column of CSV files: the notes joined ('' for the published protocol)."""
    return ", ".join(notes)


def notes_of(text: str | None) -> tuple[str, ...]:
    """A `variant` column read back into notes."""
    return tuple(part for part in str(text or "").split(", ") if part)


def comparable(notes: Sequence[str]) -> bool:
    """Whether a run of these notes may be set against the paper's numbers (released network, size and data)."""
    return set(notes) <= COMPARABLE_NOTES
