"""Typed specs for encoders (adapters/), heads (heads/) and benchmarks (benchmarks/).

Specs are data: YAML is safe-loaded and validated into these frozen dataclasses (`cxrbench.typed_yaml`). Unknown
keys, missing keys and wrong types fail with the file and key at fault (and the closest valid key), never later in a run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from cxrbench.errors import SpecError
from cxrbench.targets import kind_names, target_kind
from cxrbench.targets.base import OWNED_FIELDS, TargetKind

Interpolation = Literal["nearest", "bilinear", "bicubic", "area"]


#: the encoder forward's precision unless a run asks for another (`features.forward`, `runs.spec.RunSpec`)
DEFAULT_PRECISION = "fp32"

@dataclass(frozen=True)
class PreprocessSpec:
    """How an encoder's released code turns an image into its input tensor.

    Images arrive as float intensities in [0, 1] (see `cxrbench.data.common.images`). The steps run in order:
    optional quantisation (for encoders whose released pipeline reads 8-bit files), optional letterbox, resize, crop,
    scaling to `value_range`, channel replication, then (x - mean) / std per channel.
    """

    size: int
    resize: Literal["shortest_edge", "square"] = "shortest_edge"
    # Letterbox to this many pixels first (longest edge, PIL Lanczos on the 8-bit image, black padding),
    # for encoders trained on images stored that way (CheXzero: 320).
    letterbox: int | None = None
    interpolation: Interpolation = "bicubic"
    antialias: bool = True
    crop: int | None = None
    # Where a centre crop starts when the margin is odd: `floor` as the Hugging Face processors do, `round`
    # (half to even) as torchvision's CenterCrop does. A one-pixel shift for half of all image shapes.
    crop_offset: Literal["floor", "round"] = "floor"
    quantize_bits: int | None = None
    value_range: tuple[float, float] = (0.0, 1.0)
    channels: int = 3
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def with_size(self, size: int) -> "PreprocessSpec":
        """The same pipeline at another resolution (resize and crop scale together)."""
        crop = None if self.crop is None else size
        return dataclasses.replace(self, size=size, crop=crop)


@dataclass(frozen=True)
class WeightsSpec:
    """Where an encoder's released weights come from and under which terms."""

    hub_repo: str | None = None
    revision: str | None = None
    files: tuple[str, ...] = ()
    # Published digests of released files, "md5:<hex>" or "sha256:<hex>" by file name; a file of that name
    # that does not match is refused.
    checksums: dict[str, str] = field(default_factory=dict)
    distributed_at: str = ""
    licence: str = ""
    how_to_get: str = ""  # for weights off the Hub; Hub weights get an `hf download` command from the fields above
    # a local folder that is the release (a generic encoder named by its path, `hf:PATH`): used when no --weights
    local: str = ""


@dataclass(frozen=True)
class AdapterSpec:
    name: str
    description: str
    architecture: dict[str, Any]
    preprocessing: PreprocessSpec
    weights: WeightsSpec = field(default_factory=WeightsSpec)
    embedding_dim: int = 0  # of the global embedding; checked against the built encoder by the tests
    patch_stride: int = 0  # input pixels per patch-grid cell
    global_embedding: str = ""
    default_layers: tuple[int, ...] = ()
    citation: str = ""
    # The datasets the released weights were pre-trained on (ids as benchmarks' `source_datasets` name them, e.g.
    # mimic-cxr, chexpert, nih-cxr14), from the model card and paper; a benchmark drawn from one of them is
    # in-distribution for this encoder and its table cells are flagged. `pretraining_notes`: where it is stated, and
    # subsets held out (e.g. a test split excluded from pre-training).
    pretraining_data: tuple[str, ...] = ()
    pretraining_notes: str = ""

    def sized(self, image_size: int | None) -> PreprocessSpec:
        """The preprocessing at `image_size` (None: as released). Checked from the spec alone, so the command line
        refuses a bad --image-size before any import or data scan: a ViT needs a whole number of patches, and 0 once
        fell back silently to the released size."""
        if image_size is None:
            return self.preprocessing
        patch = int(self.architecture.get("patch_size") or 1)
        if image_size < 1 or image_size % patch:
            raise SpecError(f"--image-size {image_size}: {self.name} needs a positive multiple of its patch size {patch} "
                            f"(e.g. {self.nearest_size(image_size)}).")
        return self.preprocessing.with_size(image_size)

    def nearest_size(self, image_size: int) -> int:
        """The multiple of the patch size nearest `image_size`, one patch at least (an encoder without patches takes
        any size)."""
        patch = int(self.architecture.get("patch_size") or 1)
        return max(patch, round(image_size / patch) * patch)


@dataclass(frozen=True)
class HeadSpec:
    name: str
    description: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SplitSpec:
    """How images are split into train / val / test, always by patient.

    official: the loader's train/test split is kept; `val_fraction` of the training patients is drawn anew for
              every seed (so seeds vary the head's initialisation and its training subset).
    random:   for datasets without an official split; `fractions` of the patients go to train / val / test.
              `test: fixed` draws the test patients once, independent of the seed, so every seed and encoder is
              scored on the same images (seeds then redraw train/val); `per_seed` redraws the test set too.
              Images the loader itself marks `test` (a released test set whose training images come unsplit,
              e.g. SIIM-ACR's stage-1 test images) stay the test set; the others are split train / val in the
              ratio of the first two fractions.
    kfold:    cross-validation over the patients (RAD-DINO's demographic probes, CANDID-PTX and RSNA-Pneumonia): one
              seeded partition of the patients into `folds` parts, drawn once; seed k tests on part k and trains on
              the others, less `val_fraction` of those patients drawn per seed for validation (0: none; 0.25 with 5
              folds: 60/20/20 per fold). Seeds are folds: at most `folds` of them.
    `validate_on: train` selects the head (learning rate, epoch) on its own training images instead of a held-out
    validation split, as RayDINO does for the small JSRT (then the validation share may be 0).
    """

    scheme: Literal["official", "random", "kfold"] = "official"
    val_fraction: float = 0.1
    folds: int = 5
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    test: Literal["fixed", "per_seed"] = "fixed"
    by: Literal["patient"] = "patient"
    validate_on: Literal["val", "train"] = "val"

    def identity(self) -> dict[str, Any]:
        """The settings a run records as its split: `validate_on` only when not the default, so that runs stored
        before it existed keep their identity (resuming and paired comparisons match them)."""
        settings = dataclasses.asdict(self)
        if self.validate_on == "val":
            del settings["validate_on"]
        return settings

    @property
    def validation_split(self) -> str:
        """The manifest split whose images select a head: `val`, or `train` under `validate_on: train`."""
        return "train" if self.validate_on == "train" else "val"


@dataclass(frozen=True)
class BootstrapSpec:
    resamples: int = 1000
    confidence: float = 0.95
    unit: Literal["patient", "image"] = "patient"
    seed: int = 0


@dataclass(frozen=True)
class PublishedSpec:
    """Where the paper's numbers for this benchmark are, and how its columns map onto our tasks."""

    file: str
    source: str
    model_column: str
    scale: float
    metric: str
    task_columns: dict[str, str]
    std_suffix: tuple[str, str] = ("_mean", "_std")
    aggregate_column: str | None = None
    encoders: dict[str, str] = field(default_factory=dict)
    # when the paper's rows are encoder-and-decoder pairs: our head -> the paper's decoder name; the paper's row is
    # then "<encoder's model> / <decoder>" (RAD-DINO Table 3)
    heads: dict[str, str] = field(default_factory=dict)

    def paper_model(self, encoder: str, head: str | None = None) -> str | None:
        """The paper's row name for our encoder (and head, where rows pair an encoder with a decoder)."""
        model = self.encoders.get(encoder)
        if model is None or not self.heads:
            return model
        decoder = self.heads.get((head or "").split(" [")[0])
        return None if decoder is None else f"{model} / {decoder}"


@dataclass(frozen=True)
class GroupSpec:
    """A patient attribute that results are broken down by (stratified reporting, the bias protocol).

    `column` is one of the loader's demographic columns (`sex`, `age_years`, `race`, ...). With `bins` (edges,
    ascending) the groups are the left-closed intervals [b_i, b_i+1), named by `labels` (one per interval); a value
    outside every interval belongs to no group. Without bins the column is categorical: `labels` lists the values
    that form groups, in the order they are shown (empty: every value present, sorted). Images whose value is
    unknown or in no group are counted as such and left out of the breakdown, never put in a group.
    """

    column: str
    bins: tuple[float, ...] = ()
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.bins:
            if len(self.bins) < 2 or any(b >= c for b, c in zip(self.bins, self.bins[1:])):
                raise SpecError(f"group on '{self.column}': `bins` must be two or more ascending edges, got {list(self.bins)}.")
            if self.labels and len(self.labels) != len(self.bins) - 1:
                raise SpecError(f"group on '{self.column}': {len(self.bins) - 1} bins need as many `labels`, got "
                                f"{len(self.labels)}.")
        if len(set(self.labels)) != len(self.labels):
            raise SpecError(f"group on '{self.column}': `labels` must be distinct, got {list(self.labels)}.")

    @property
    def names(self) -> tuple[str, ...]:
        """The groups' names where they are fixed by the spec (bins, or listed values); () for 'every value'."""
        if self.bins and not self.labels:
            return tuple(f"{a:g}-{b:g}" for a, b in zip(self.bins, self.bins[1:]))
        return self.labels


@dataclass(frozen=True)
class TargetSpec:
    """One thing a benchmark asks about an image, and the kind of answer.

    `kind` names a target kind (`cxrbench.targets`: binary, multiclass, regression, mask, or one registered by a
    plugin); the kind's module says what the loader's column holds and which fields the kind takes (`classes` for
    multiclass, `structures` and `lateral` for mask). A spec lists a binary target by its name alone, any other
    as a mapping.
    """

    name: str
    kind: str = "binary"
    classes: tuple[str, ...] = ()
    unit: str = ""
    structures: tuple[str, ...] = ()
    # this target's metrics when not the benchmark's (e.g. a regression target beside binary ones)
    metrics: tuple[str, ...] = ()
    lateral: bool = False

    def __post_init__(self) -> None:
        where = f"target '{self.name}'"
        kind = target_kind(self.kind, where)
        for name in OWNED_FIELDS:
            if getattr(self, name) and name not in kind.fields:
                owners = " / ".join(k for k in kind_names() if name in target_kind(k).fields)
                raise SpecError(f"{where}: `{name}` belong{'s' if name == 'lateral' else ''} to {owners} targets (this "
                                f"one is {self.kind}).")
        kind.check(self, where)

    @property
    def target_kind(self) -> TargetKind:
        """The kind object behind `kind`: what this target's column holds and how it is learned and scored."""
        return target_kind(self.kind)

    @property
    def outputs(self) -> int:
        """How many numbers a head predicts for it: one per class for multiclass, else one."""
        return self.target_kind.outputs(self)


@dataclass(frozen=True)
class TransferSpec:
    """A transfer benchmark: heads trained and validated on one benchmark, scored on another's images.

    `train` and `test` name registered benchmarks; each is read by its own loader with its own options
    (`train_options`, `test_options`: what `--dataset-option` would give it) and with the transfer's targets as that
    side names them. `mapping` is the label table of the pair: each target of the transfer (named as the test
    benchmark names it) -> the train benchmark's target that supplies its training labels; for a mask target, the
    train benchmark's loader builds the test benchmark's structures itself (e.g. PAXRay++'s `structure_classes`
    among `train_options`). The test benchmark's findings left out of the mapping are not scored: `unmapped: drop`
    says so in a note, `refuse` stops the run.
    """

    train: str
    test: str
    mapping: dict[str, str]
    train_options: dict[str, Any] = field(default_factory=dict)
    test_options: dict[str, Any] = field(default_factory=dict)
    unmapped: Literal["drop", "refuse"] = "drop"


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    title: str
    dataset: dict[str, Any]
    targets: tuple[TargetSpec | str, ...]
    metrics: tuple[str, ...] = ("auprc", "auroc")
    primary_metric: str = "auprc"
    seeds: int = 5
    default_head: str = "linear"
    data_root_env: str | None = None
    split: SplitSpec = field(default_factory=SplitSpec)
    bootstrap: BootstrapSpec = field(default_factory=BootstrapSpec)
    published: PublishedSpec | None = None
    # The public datasets its test images come from (ids as adapters' `pretraining_data` name them): RSNA-Pneumonia
    # and SIIM-ACR images are ChestX-ray14 images, so they are `nih-cxr14`.
    source_datasets: tuple[str, ...] = ()
    # Patient attributes results are broken down by (stratified tables, `cxrbench bias`), by name; a group with
    # fewer test patients than `min_group_patients` is reported as too small, not as a number.
    groups: dict[str, GroupSpec] = field(default_factory=dict)
    min_group_patients: int = 20
    # How each seed's decision threshold of a binary target is chosen on its validation split, for the
    # underdiagnosis (false-negative) rate per group: `f1` (maximum F1) or `youden` (maximum TPR - FPR).
    operating_point: Literal["f1", "youden"] = "f1"
    notes: str = ""
    # A transfer benchmark (`cxrbench.transfer`): trained on one benchmark, tested on another; None for the others.
    transfer: TransferSpec | None = None

    def __post_init__(self) -> None:
        targets = tuple(TargetSpec(t) if isinstance(t, str) else t for t in self.targets)
        object.__setattr__(self, "targets", targets)
        if not targets:
            raise SpecError(f"benchmark '{self.name}': `targets` lists nothing to predict.")
        names = [t.name for t in targets]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise SpecError(f"benchmark '{self.name}': target '{duplicate}' is listed twice.")
        structures = [s for t in targets for s in t.structures]  # a structure is a result column and a decoder channel
        duplicate = next((s for s in structures if structures.count(s) > 1), None)
        if duplicate is not None:
            raise SpecError(f"benchmark '{self.name}': structure '{duplicate}' is listed twice; each structure belongs "
                            "to one mask target, once.")
        if self.transfer is not None:
            self._check_transfer(self.transfer, names)
        if self.primary_metric not in self.metrics:
            raise SpecError(f"benchmark '{self.name}': primary_metric '{self.primary_metric}' is not among its "
                            f"metrics {list(self.metrics)}.")

    def _check_transfer(self, transfer: TransferSpec, names: list[str]) -> None:
        """One mapping row per target, and the test images' datasets taken from the test benchmark (pre-training
        overlap is judged on the images scored), so they are not declared twice."""
        unmapped = [n for n in names if n not in transfer.mapping]
        extra = [n for n in transfer.mapping if n not in names]
        if unmapped or extra:
            problem = (f"target '{unmapped[0]}' has no row in transfer.mapping" if unmapped else
                       f"transfer.mapping row '{extra[0]}' is not a target")
            raise SpecError(f"benchmark '{self.name}': {problem}; give every target exactly one row (test name: train name).")
        if self.source_datasets:
            raise SpecError(f"benchmark '{self.name}': a transfer benchmark's source datasets are its test benchmark's "
                            f"('{transfer.test}'); remove source_datasets.")

    @property
    def tasks(self) -> tuple[str, ...]:
        """The targets' names, in order (the loader's label columns)."""
        return tuple(t.name for t in self.targets)

    @property
    def result_columns(self) -> tuple[str, ...]:
        """What results are reported per: each target, or for a mask target each of its structures."""
        return tuple(c for t in self.targets for c in t.target_kind.result_columns(t))

    def target(self, name: str) -> TargetSpec:
        return next(t for t in self.targets if t.name == name)

    def metrics_for(self, target: TargetSpec) -> tuple[str, ...]:
        return target.metrics or self.metrics
