"""Paired comparisons of stored runs scored on the same test patients (`cxrbench compare`, `table --versus`).

Two encoders' CIs overlapping says little: both are scored on the same patients, so their errors are correlated
and the question is the CI of their difference. For each other encoder's run against the reference run (same
benchmark, same head, same split and seeds) this gives the paired patient-bootstrap CI of the difference and its
p-value, DeLong's test for AUROC and the t-test over seeds that RayDINO reports (`cxrbench.stats.paired`); the
p-values of one comparison table are adjusted together (Holm by default) and each row gets a verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
import numpy as np
import pandas as pd

from cxrbench.errors import CxrbenchError, DataError
from cxrbench.registry import metric_spec
from cxrbench.results.labels import variant_text
from cxrbench.results.store import StoredRun
from cxrbench.stats.multiplicity import adjust_p_values
from cxrbench.stats.paired import paired_differences

COLUMNS = ["benchmark", "metric", "reference", "reference_variant", "encoder", "variant", "head", "target",
           "mean_reference", "mean_encoder", "diff", "ci_low", "ci_high", "p_bootstrap", "p_delong", "p_ttest", "p_adjusted",
           "correction", "verdict"]
#: What each p-value of a comparison measures, printed under every comparison table (Markdown and report): they
#: answer different questions, and a reader choosing one for a paper must know which.
TEST_NOTES = (
    "p (bootstrap) and the CI: test-set sampling. Test patients are resampled (all images of a patient together) "
    "with the trained heads fixed; the statistic is the mean over training seeds. p cannot fall below 2/(B+1) "
    "with B resamples.",
    "p (DeLong), AUROC on binary targets: test-set sampling too, analytic, clustered by patient (Obuchowski 1997); "
    "per seed, then combined: 1 when the seeds disagree on which model is better, else twice the largest one-sided p.",
    "p (t-test): training variability. The seeds' metric values of the two runs are compared on the one fixed test "
    "set (RayDINO's test); it says nothing about a new test set.",
)
TESTS = {"bootstrap": "p_bootstrap", "delong": "p_delong", "ttest": "p_ttest"}
BETTER, WORSE, SAME, UNTESTED = "better", "worse", "not significant", "not tested"


def pair_check(reference: StoredRun, other: StoredRun) -> None:
    """Refuse a pair that was not scored on the same test rows with the same bootstrap."""
    keys = ("split", "seeds", "dataset_options", "bootstrap", "label_budget")
    ours, theirs = reference.metrics.get("run_identity", {}), other.metrics.get("run_identity", {})
    differing = [k for k in keys if ours.get(k) != theirs.get(k)]
    if differing:
        raise DataError(f"{reference.folder} and {other.folder} differ in {', '.join(differing)}: a paired comparison "
                        "needs both runs on the same split, seeds, dataset options and bootstrap. Run them again alike.")


def compare_runs(reference: StoredRun, others: Sequence[StoredRun], metric: str, correction: str = "holm",
                 test: str = "bootstrap", ttest: str = "independent", alpha: float = 0.05) -> pd.DataFrame:
    """One row per (other run, target and macro) in COLUMNS: `variant` / `reference_variant` say how each run differs
    from the published protocol (`cxrbench.results.labels`), `diff` is the other run minus the reference, in raw
    fractions; `verdict` says whether the other encoder is better, worse or not significantly different, from
    the `test` p-value adjusted over every row of this comparison."""
    if test not in TESTS:
        raise CxrbenchError(f"--test {test}: choose one of {', '.join(TESTS)}.")
    if metric not in reference.metrics.get("metrics", {}):
        raise CxrbenchError(f"{reference.folder} has no {metric} scores; run it with --metric {metric}.")
    targets = [t for t in reference.scored_targets() if t.name in reference.metrics["metrics"][metric]]
    bootstrap = reference.bootstrap()
    predictions = reference.predictions()
    records = []
    for other in others:
        pair_check(reference, other)
        for row in paired_differences(other.predictions(), predictions, targets, metric, bootstrap, ttest=ttest):
            records.append({"benchmark": reference.benchmark, "metric": metric, "reference": reference.encoder,
                            "reference_variant": variant_text(reference.variant), "encoder": other.encoder,
                            "variant": variant_text(other.variant), "head": other.method, "target": row.target,
                            "mean_reference": row.mean_b, "mean_encoder": row.mean_a, "diff": row.diff,
                            "ci_low": row.ci_low, "ci_high": row.ci_high, "p_bootstrap": row.p_bootstrap,
                            "p_delong": row.p_delong, "p_ttest": row.p_ttest})
    frame = pd.DataFrame(records, columns=COLUMNS)
    chosen = frame[TESTS[test]].astype(float).to_numpy() if len(frame) else np.array([])
    frame["p_adjusted"] = adjust_p_values(chosen, correction) if len(frame) else []
    frame["correction"] = correction
    higher = metric_spec(metric).higher_is_better
    frame["verdict"] = [_verdict(diff, p, higher, alpha) for diff, p in zip(frame["diff"], frame["p_adjusted"])]
    return frame


def _verdict(diff, p, higher_is_better: bool, alpha: float) -> str:
    if p is None or diff is None or not np.isfinite(p) or not np.isfinite(diff):
        return UNTESTED
    if p >= alpha or diff == 0:
        return SAME
    return BETTER if (diff > 0) == higher_is_better else WORSE


def reference_run(runs: Sequence[StoredRun], encoder: str, head: str) -> StoredRun:
    """The reference encoder's run of `head` (a full-data run, released or not), or a clear error."""
    found = [run for run in runs if run.encoder == encoder and run.method == head]
    if not found:
        heads = sorted({run.method for run in runs if run.encoder == encoder})
        raise CxrbenchError(f"No stored full-data run of '{encoder}' with head '{head}'"
                            + (f" (its heads: {', '.join(heads)})." if heads else ".")
                            + " Run it first, or choose another reference.")
    return found[0]


def versus_verdicts(cells: Sequence[tuple[StoredRun, StoredRun, str, str]], correction: str = "holm",
                    test: str = "bootstrap", alpha: float = 0.05) -> list[str]:
    """The verdict of each table cell (run, reference run, metric, target) against the reference, with the p-values
    of every cell adjusted together (a table is one family of comparisons)."""
    rows: dict[tuple, pd.DataFrame] = {}
    for run, reference, metric, _ in cells:
        key = (run.folder, reference.folder, metric)
        if key not in rows:
            rows[key] = compare_runs(reference, [run], metric, correction="none", test=test, alpha=alpha)
    found = [rows[(run.folder, reference.folder, metric)].set_index("target").loc[target]
             for run, reference, metric, target in cells]
    adjusted = adjust_p_values(np.array([float(row[TESTS[test]]) if row[TESTS[test]] is not None else np.nan
                                         for row in found]), correction) if found else []
    return [_verdict(row["diff"], p, metric_spec(metric).higher_is_better, alpha)
            for row, p, (_, _, metric, _) in zip(found, adjusted, cells)]
