"""The bias protocol's analysis (RayDINO Fig. 4c/4d, after Larrazabal et al. 2020), read from stored runs.

`cxrbench bias` trains, per fold (a seed), one head on each group of an attribute (equal numbers of patients, a
`GroupBudget`) and one on their union ("All", the topline), and scores every head on the whole test split. Here the
stored predictions are broken down by the test images' group (the `group:<attribute>` column written beside them):

- fold scores: the metric per fold, training group and test group (fairlearn's `MetricFrame` per target, then the
  macro average over targets; a target without both classes in a test group makes that cell undefined);
- Mann-Whitney U tests (scipy, two-sided): for each test group, the folds of the head trained on that same group
  against the folds of each head trained on another group: is a head better on the group it was trained on?;
- model-against-model Mann-Whitney U tests (RayDINO section "Examining performance across sex and age groups"
  compares its encoder with the others this way): for each training and test group, the folds of one model against
  those of every other model;
- the table: mean ± std over folds per training and test group, and per training group its worst test group.

What the folds vary: each fold draws new training patients per group and a new validation split, but the test split
is the benchmark's (its official test set, or a `random` split's fixed one), so every fold of a run is scored on the
same test images (`test_sets` checks it on the stored manifests and the Markdown says so). The spread over
folds is training-sample variation only, and the Mann-Whitney tests treat the folds as independent samples although
they share those test images: their p-values say nothing about test-set sampling.

Each head chooses its configuration (e.g. the RayDINO grid's) on the validation images of the group it trains on
(`GroupBudget`), never on another group's.

Each model's analysis is a bias run of the results store (`store_bias_runs`): OUT/BENCHMARK/ENCODER/HEAD[_TAG]_bias-
ATTRIBUTE-METRIC/ with metrics.json (kind "bias": the fold scores, the same-vs-other tests, the group runs it read and
its identity, made of theirs), folds.csv, tests.csv and table.md; a stored one of the same settings is kept, one of
other settings refused without --overwrite. Every model's bias runs of an attribute are then laid side by side in
OUT/BENCHMARK/ (`results.store.bias_files`: bias_ATTRIBUTE_folds.csv, bias_ATTRIBUTE_tests.csv,
bias_ATTRIBUTE_models.csv, bias_ATTRIBUTE.md and .png) from their metrics.json. `model` is the run's label
for people ('rad-dino (random init) / linear'); the CSV files also give it apart, as the other CSV files do: the bare
`encoder`, its `variant` ('' for the published protocol, `cxrbench.results.labels`) and the `head`.
"""

from __future__ import annotations

import hashlib
import io
import platform
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import cxrbench
from cxrbench.data.groups import group_column
from cxrbench.data.splits import ALL_GROUPS
from cxrbench.errors import CxrbenchError
from cxrbench.files import atomic_bytes, atomic_text
from cxrbench.registry import metric as registered_metric
from cxrbench.registry import metric_spec
from cxrbench.results.labels import variant_text
from cxrbench.recording import recorded_command
from cxrbench.results.provenance import SCHEMA_VERSION, git_info, package_versions
from cxrbench.results.store import (BIAS, METRICS, StoredRun, bias_files, bias_folder, csv_writer, json_writer,
                                    refuse_other_settings, resume_decision, split_manifests, stored_runs, text_writer,
                                    write_run)
from cxrbench.stats.summary import target_arrays
from cxrbench.tables.markdown import to_markdown

FOLD_COLUMNS = ["model", "encoder", "variant", "head", "train_group", "test_group", "fold", "value"]


@dataclass(frozen=True)
class BiasRuns:
    """One encoder and head's bias runs of one attribute: the training group -> its stored run."""

    model: str
    runs: dict[str, StoredRun]

    @property
    def parts(self) -> dict[str, str]:
        """The model's encoder, variant and head, for the CSV columns beside its label (every run of a model shares
        them: the label is made of them)."""
        run = next(iter(self.runs.values()))
        return {"encoder": run.encoder, "variant": variant_text(run.variant), "head": run.method}


def train_group(run: StoredRun) -> dict | None:
    """The run's `label_budget.train_group` (attribute, group, patients, share), None for any other run."""
    budget = run.metrics.get("label_budget")
    return budget.get("train_group") if isinstance(budget, dict) else None


def bias_runs(runs: Sequence[StoredRun], attribute: str) -> list[BiasRuns]:
    """The stored runs trained on one group of `attribute`, gathered per model (encoder label and head)."""
    models: dict[str, dict[str, StoredRun]] = {}
    for run in runs:
        group = train_group(run)
        if group is None or group["attribute"] != attribute:
            continue
        model = run.label
        models.setdefault(model, {})[group["group"]] = run
    return [BiasRuns(model, found) for model, found in sorted(models.items())]


def fold_scores(models: Sequence[BiasRuns], attribute: str, metric: str) -> pd.DataFrame:
    """model, train_group, test_group, fold, value: the macro metric of each head on each test group, per fold."""
    from fairlearn.metrics import MetricFrame

    scorer = registered_metric(metric)
    column = group_column(attribute)
    rows = []
    for model in models:
        for trained_on, run in model.runs.items():
            predictions = run.predictions()
            if column not in predictions:
                raise CxrbenchError(f"{run.folder / 'predictions.parquet'} has no '{column}' column: the run was not made "
                                    f"with the benchmark's group '{attribute}'. Run `cxrbench bias` again with --overwrite.")
            targets = [t for t in run.scored_targets() if t.kind in scorer.kinds]
            for fold, part in predictions.groupby("seed", sort=True):
                images = pd.Index(part["image_id"].drop_duplicates().sort_values())
                groups = part.drop_duplicates("image_id").set_index("image_id").loc[images, column].to_numpy(dtype=object)
                per_target = []
                for target in targets:
                    labels, scores = target_arrays(part, target, images)
                    known = ~np.isnan(labels) & (groups != None)  # noqa: E711 - object array of names and None
                    frame = MetricFrame(metrics=_defined(scorer.score), y_true=labels[known], y_pred=scores[known],
                                        sensitive_features=groups[known])
                    per_target.append(frame.by_group)
                macro = pd.concat(per_target, axis=1).mean(axis=1, skipna=False)
                rows += [{"model": model.model, **model.parts, "train_group": trained_on, "test_group": name,
                          "fold": int(fold), "value": float(value)} for name, value in macro.items()]
    return pd.DataFrame(rows, columns=FOLD_COLUMNS)


def _defined(score):
    """The metric, NaN where a group's labels have one class (AUROC and AUPRC are undefined there)."""
    def scored(labels: np.ndarray, scores: np.ndarray) -> float:
        return score(labels, scores) if len(np.unique(labels)) > 1 else float("nan")
    return scored


def mann_whitney(scores: pd.DataFrame) -> pd.DataFrame:
    """Per model and test group, the folds of the head trained on that group against those of each head trained on
    another group (not All): U, two-sided p (scipy.stats.mannwhitneyu), both means and their difference."""
    from scipy.stats import mannwhitneyu

    rows = []
    for (model, tested), part in scores.groupby(["model", "test_group"], sort=False):
        parts = part.iloc[0][["encoder", "variant", "head"]].to_dict()
        same = part.loc[part["train_group"] == tested, "value"].dropna().to_numpy()
        if len(same) == 0:
            continue
        for other_group in part["train_group"].unique():
            if other_group in (tested, ALL_GROUPS):
                continue
            other = part.loc[part["train_group"] == other_group, "value"].dropna().to_numpy()
            if len(other) == 0:
                continue
            result = mannwhitneyu(same, other, alternative="two-sided")
            rows.append({"model": model, **parts, "test_group": tested, "other_group": other_group,
                         "n_same": len(same), "n_other": len(other), "same_mean": float(same.mean()),
                         "other_mean": float(other.mean()), "difference": float(same.mean() - other.mean()),
                         "u": float(result.statistic), "p": float(result.pvalue)})
    return pd.DataFrame(rows, columns=["model", "encoder", "variant", "head", "test_group", "other_group", "n_same",
                                       "n_other", "same_mean", "other_mean", "difference", "u", "p"])


MODEL_TEST_COLUMNS = ["train_group", "test_group", "model", "variant", "other_model", "other_variant", "n_model",
                      "n_other", "model_mean", "other_mean", "difference", "u", "p"]


def model_mann_whitney(scores: pd.DataFrame) -> pd.DataFrame:
    """Per training and test group, each pair of models: the folds of one against the other's, U and two-sided p
    (scipy.stats.mannwhitneyu), both means and their difference (model minus other model); `variant` and
    `other_variant` say how each differs from the published protocol, as in the comparison CSV files."""
    from scipy.stats import mannwhitneyu

    variants = dict(zip(scores["model"], scores["variant"]))
    rows = []
    for (trained_on, tested), part in scores.groupby(["train_group", "test_group"], sort=False):
        folds = {model: values["value"].dropna().to_numpy() for model, values in part.groupby("model", sort=False)}
        names = [model for model, values in folds.items() if len(values)]
        for k, model in enumerate(names):
            for other in names[k + 1:]:
                result = mannwhitneyu(folds[model], folds[other], alternative="two-sided")
                rows.append({"train_group": trained_on, "test_group": tested, "model": model,
                             "variant": variants[model], "other_model": other, "other_variant": variants[other],
                             "n_model": len(folds[model]), "n_other": len(folds[other]),
                             "model_mean": float(folds[model].mean()), "other_mean": float(folds[other].mean()),
                             "difference": float(folds[model].mean() - folds[other].mean()),
                             "u": float(result.statistic), "p": float(result.pvalue)})
    return pd.DataFrame(rows, columns=MODEL_TEST_COLUMNS)


def test_sets(model: BiasRuns) -> list[str]:
    """A digest of each distinct set of test images the model's group runs were scored on (one per fold, or one in
    all when the folds share the benchmark's fixed test split)."""
    tested = set()
    for run in model.runs.values():
        splits = split_manifests(run)  # the strict reader: columns named
        test = splits[splits["split"] == "test"]
        tested |= {hashlib.sha256("\n".join(sorted(map(str, part["image_id"]))).encode()).hexdigest()
                   for _, part in test.groupby("seed")}
    return sorted(tested)


def bias_table(scores: pd.DataFrame, tests: pd.DataFrame, metric: str, order: Sequence[str]) -> pd.DataFrame:
    """Rows model / trained on; columns each test group ('mean ± std' over folds, on the metric's scale, with the
    same-vs-other p-value under the cross-group cells) and the worst test group."""
    spec = metric_spec(metric)
    rows = {}
    for (model, trained_on), part in scores.groupby(["model", "train_group"], sort=False):
        means = part.groupby("test_group")["value"].agg(["mean", "std", "count"])
        cells = {}
        for tested in order:
            if tested not in means.index:  # no test image of that group: say so rather than leave the column out
                cells[f"test {tested}"] = "no test images"
                continue
            mean, std = means.loc[tested, "mean"], means.loc[tested, "std"]
            text = "n/a" if pd.isna(mean) else f"{spec.scale * mean:.{spec.decimals}f} ± {spec.scale * (std if pd.notna(std) else 0):.{spec.decimals}f}"
            test = tests[(tests["model"] == model) & (tests["test_group"] == tested) & (tests["other_group"] == trained_on)]
            if len(test):
                text += f" (p={test['p'].iloc[0]:.2g} vs {tested})"
            cells[f"test {tested}"] = text
        defined = means["mean"].dropna()
        cells["worst test group"] = (f"{defined.idxmin()} {spec.scale * defined.min():.{spec.decimals}f}"
                                     if len(defined) else "n/a")
        rows[f"{model} · trained on {trained_on}"] = cells
    return pd.DataFrame.from_dict(rows, orient="index")


def _model_tests_markdown(versus: pd.DataFrame, metric: str) -> str:
    """The model-against-model tests as a Markdown section (nothing with a single model)."""
    if versus.empty:
        return ""
    spec = metric_spec(metric)
    table = pd.DataFrame({
        "trained on → tested on": versus["train_group"] + " → " + versus["test_group"],
        "models": versus["model"] + " vs " + versus["other_model"],
        "difference": [f"{spec.scale * d:+.{spec.decimals}f}" for d in versus["difference"]],
        "p": [f"{p:.2g}" for p in versus["p"]],
    }).set_index("trained on → tested on")
    return ("\n\n## Model against model\n\nPer training and test group, the folds of one model against another's "
            "(Mann-Whitney U, two-sided); difference: first model's mean minus the second's.\n\n"
            + to_markdown(table, "trained on → tested on"))


def train_order(scores: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """Rows in the attribute's group order, All last."""
    rank = {name: k for k, name in enumerate([*order, ALL_GROUPS])}
    return scores.sort_values(["model", "train_group", "test_group", "fold"],
                              key=lambda c: c.map(rank) if c.name in ("train_group", "test_group") else c,
                              kind="stable").reset_index(drop=True)


def plot_bias(scores: pd.DataFrame, metric: str, order: Sequence[str], title: str):
    """Fig. 4c/4d as a figure: per model a panel, per test group a cluster of box plots (one per training group),
    every fold drawn as a point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = metric_spec(metric)
    models = list(dict.fromkeys(scores["model"]))
    trained = [g for g in [*order, ALL_GROUPS] if g in set(scores["train_group"])]
    figure, axes = plt.subplots(1, len(models), figsize=(max(6.0, 0.8 * len(order) * len(trained)) * len(models), 4.4),
                                squeeze=False, sharey=True)
    colours = plt.get_cmap("tab10")
    width = 0.8 / max(1, len(trained))
    for axis, model in zip(axes[0], models):
        part = scores[scores["model"] == model]
        for k, group in enumerate(trained):
            positions, values = [], []
            for x, tested in enumerate(order):
                folds = part[(part["train_group"] == group) & (part["test_group"] == tested)]["value"].dropna()
                if len(folds):
                    positions.append(x - 0.4 + width * (k + 0.5))
                    values.append(spec.scale * folds.to_numpy())
            if not values:
                continue
            boxes = axis.boxplot(values, positions=positions, widths=width * 0.85, patch_artist=True, showfliers=False)
            for box in boxes["boxes"]:
                box.set(facecolor=colours(k), alpha=0.35)
            for position, folds in zip(positions, values):
                axis.scatter(np.full(len(folds), position), folds, s=8, color=colours(k), zorder=3)
            axis.plot([], [], color=colours(k), linewidth=6, alpha=0.5, label=f"trained on {group}")
        axis.set_xticks(range(len(order)), [f"test {g}" for g in order])
        axis.set_title(model, fontsize=9)
        axis.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel(spec.heading)
    axes[0][-1].legend(fontsize=8, loc="lower right")
    figure.suptitle(textwrap.fill(title, 90), fontsize=10)
    figure.tight_layout()
    return figure


def bias_identity(model: BiasRuns, attribute: str, metric: str, order: Sequence[str]) -> dict:
    """A bias run's `run_identity`: its group runs' shared settings (weights, preprocessing, data, head, seeds, ...:
    so tables label it as they label them), and the analysis: attribute, metric, groups and each group run's own
    identity (a group run trained again with other settings makes the analysis another)."""
    first = model.runs.get(ALL_GROUPS) or next(iter(model.runs.values()))
    shared = {k: v for k, v in (first.metrics.get("run_identity") or {}).items() if k != "label_budget"}
    return {**shared, "label_budget": None, "metrics": [metric],
            "bias": {"attribute": attribute, "metric": metric, "groups": list(order),
                     "group_runs": {group: run.metrics.get("run_identity")
                                    for group, run in sorted(model.runs.items())}}}


def store_bias_runs(out: Path, benchmark: str, attribute: str, metric: str, order: Sequence[str],
                    overwrite: bool = False, note: Callable[[str], None] | None = None) -> list[StoredRun]:
    """One bias run per model with group runs of `attribute` under OUT/BENCHMARK (the store's `bias_folder`): kept as
    stored when its settings are the same, refused when they differ (unless `overwrite`), else scored and written."""
    models = bias_runs(stored_runs(out, benchmark), attribute)
    if not models:
        raise CxrbenchError(f"No bias runs of '{attribute}' for {benchmark} under {out}: run `cxrbench bias {benchmark} "
                            f"--attribute {attribute} --encoder NAME` first.")
    stored = []
    for model in models:
        first = next(iter(model.runs.values()))
        folder = bias_folder(out, benchmark, first.encoder, first.head, first.tag, attribute, metric)
        identity = bias_identity(model, attribute, metric, order)
        metrics = resume_decision(folder, identity, overwrite, note)
        if metrics is None:
            metrics = _write_bias_run(folder, model, identity, attribute, metric, order, overwrite)
        stored.append(StoredRun(benchmark, folder, metrics))
    return stored


def _write_bias_run(folder: Path, model: BiasRuns, identity: dict, attribute: str, metric: str, order: Sequence[str],
                    overwrite: bool) -> dict:
    """Score one model's group runs per test group and write its bias run; returns its metrics.json."""
    scores = train_order(fold_scores([model], attribute, metric), order)
    tests = mann_whitney(scores)
    first = model.runs.get(ALL_GROUPS) or next(iter(model.runs.values()))
    digests = test_sets(model)
    metrics = {
        "schema_version": SCHEMA_VERSION, "kind": BIAS, "benchmark": first.benchmark, "encoder": first.encoder,
        "head": first.head, "tag": first.tag, "seeds": sorted(int(f) for f in scores["fold"].unique()),
        "run_identity": identity, "provenance": _provenance(first),
        "bias": {"attribute": attribute, "metric": metric, "groups": list(order),
                 "runs": {group: run.folder.name for group, run in sorted(model.runs.items())},
                 "folds": [{"train_group": r.train_group, "test_group": r.test_group, "fold": int(r.fold),
                            "value": None if pd.isna(r.value) else float(r.value)} for r in scores.itertuples()],
                 "tests": [{k: None if isinstance(v, float) and np.isnan(v) else v for k, v in row.items()
                            if k not in ("model", *model.parts)} for row in tests.to_dict("records")],
                 "shared_test_set": len(digests) == 1, "test_sets": digests},
    }
    table = bias_table(scores, tests, metric, order)
    heading = f"# {model.model}: heads trained on one {attribute} group, scored on each\n\n"
    write_run(folder, {METRICS: json_writer(metrics), "folds.csv": csv_writer(scores), "tests.csv": csv_writer(tests),
                       "table.md": text_writer(heading + to_markdown(table, "model · training group"))},
              check=lambda stored: refuse_other_settings(folder, stored, identity, overwrite, at_write=True))
    return metrics


def _provenance(run: StoredRun) -> dict:
    """A bias run's provenance: the software that scored it now, and the weights and data of its group runs (`run`:
    one of them; every group run of a model shares its weights and data set)."""
    return {**(run.metrics.get("provenance") or {}), "cxrbench": cxrbench.__version__, "git": git_info(),
            "packages": package_versions(), "platform": platform.platform(), "command": recorded_command()}


def stored_scores(runs: Sequence[StoredRun]) -> pd.DataFrame:
    """The fold scores of stored bias runs (their metrics.json), in FOLD_COLUMNS, each labelled as its model."""
    rows = [{"model": run.label, "encoder": run.encoder, "variant": variant_text(run.variant), "head": run.method,
             "train_group": row["train_group"], "test_group": row["test_group"], "fold": int(row["fold"]),
             "value": np.nan if row["value"] is None else float(row["value"])}
            for run in runs for row in run.metrics["bias"]["folds"]]
    return pd.DataFrame(rows, columns=FOLD_COLUMNS)


def write_bias(out: Path, benchmark: str, attribute: str, metric: str, order: Sequence[str], title: str,
               overwrite: bool = False, note: Callable[[str], None] | None = None,
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Path]]:
    """Every model's bias run of `attribute` (stored, or scored now: `store_bias_runs`), side by side: fold scores,
    tests, model-against-model tests, table and figure under OUT/BENCHMARK/ (`results.store.bias_files`)."""
    runs = store_bias_runs(out, benchmark, attribute, metric, order, overwrite, note)
    scores = train_order(stored_scores(runs), order)
    tests = mann_whitney(scores)
    versus = model_mann_whitney(scores)
    table = bias_table(scores, tests, metric, order)
    paths = bias_files(out, benchmark, attribute)
    atomic_text(paths["folds"], scores.to_csv(index=False))
    atomic_text(paths["tests"], tests.to_csv(index=False))
    atomic_text(paths["models"], versus.to_csv(index=False))
    folds = int(scores["fold"].nunique())
    shared = ("Every fold is scored on the same test images (the benchmark's test split); folds redraw the training "
              "patients and the validation split only, so the spread and the p-values reflect training samples, not "
              "test-set sampling." if len({d for run in runs for d in run.metrics["bias"]["test_sets"]}) == 1 else
              "The folds are scored on different test images (the benchmark's split redraws its test set per seed).")
    atomic_text(paths["md"], f"# {title}\n\n{metric_spec(metric).heading}, mean ± std over {folds} folds; p: Mann-Whitney "
                             "U (two-sided) of the head trained on the tested group against this one, over folds. "
                             f"Each head chose its configuration on its own training group's validation images. {shared}"
                             "\n\n" + to_markdown(table, "model · training group") + _model_tests_markdown(versus, metric))
    figure = plot_bias(scores, metric, order, title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    figure.clf()
    atomic_bytes(paths["png"], buffer.getvalue())
    return scores, tests, table, paths
