"""Patient groups, stratified reports and the bias protocol, held to direct recomputations from the stored files.

One synthetic VinDr-CXR folder (sex and age in the DICOM headers), the `pixels` encoder and a one-setting logistic
head keep it fast; every number checked here is recomputed with scikit-learn, scipy or numpy from the run's own
predictions.parquet, splits.parquet or fold CSV, never read back from the code under test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.data.common.synthetic import SyntheticConfig
from cxrbench.data.groups import group_labels
from cxrbench.data.vindr.synthetic import write_synthetic_vindr
from cxrbench.errors import DataError, SpecError
from cxrbench.registry import benchmark_spec
from cxrbench.analyses.bias import model_mann_whitney, train_group
from cxrbench.results.labels import RANDOM_INIT, SYNTHETIC_DATA, variant_text
from cxrbench.results.store import stored_runs
from cxrbench.specs import GroupSpec
from cxrbench.stats.thresholds import choose_threshold
from cxrbench.study import load_benchmark

runner = CliRunner()
HEAD = ["--encoder", "pixels", "--head", "logistic", "--head-param", "C=[1.0]", "--bootstrap", "50"]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """500 synthetic patients (about 780 images), a plain run and a 3-fold bias run by sex."""
    base = tmp_path_factory.mktemp("bias")
    data = write_synthetic_vindr(base / "vindr", SyntheticConfig(patients=500, size=32, seed=5))
    common = [*HEAD, "--data-root", str(data), "--out", str(base / "results"), "--cache-dir", str(base / "cache")]
    result = runner.invoke(app, ["run", "vindr", "--seeds", "1", *common])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["bias", "vindr", "--attribute", "sex", "--folds", "3", *common])
    assert result.exit_code == 0, result.output
    return base


# ------------------------------------------------------------------------------------------------ groups


def test_bins_are_left_closed_and_unknown_values_in_no_group():
    samples = pd.DataFrame({"age_years": [0, 34.9, 35, 59.99, 60, 99, 100, np.nan, -1], "sex": list("FMFMF") + ["", "X", "M", "F"]})
    ages = group_labels(samples, "age", GroupSpec("age_years", bins=(0, 35, 60, 100), labels=("Y", "M", "E")))
    assert [None if pd.isna(v) else v for v in ages] == ["Y", "Y", "M", "M", "E", "E", None, None, None]
    sexes = group_labels(samples, "sex", GroupSpec("sex", labels=("F", "M")))
    assert [None if pd.isna(v) else v for v in sexes] == ["F", "M", "F", "M", "F", None, None, "M", "F"]
    with pytest.raises(DataError, match="does not supply"):
        group_labels(samples, "race", GroupSpec("race"))
    with pytest.raises(SpecError, match="ascending"):
        GroupSpec("age_years", bins=(0, 60, 35))


@pytest.mark.parametrize("rule", ["f1", "youden"])
def test_threshold_maximises_its_rule_over_every_cut(rule):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200).astype(float)
    scores = np.clip(labels * 0.3 + rng.random(200) * 0.8, 0, 1)
    labels[:5] = np.nan
    chosen = choose_threshold(labels, scores, rule)

    def value(t):
        y, call = labels[5:] == 1, scores[5:] >= t
        tp, fp, fn, tn = (y & call).sum(), (~y & call).sum(), (y & ~call).sum(), (~y & ~call).sum()
        return 2 * tp / (2 * tp + fp + fn) if rule == "f1" else tp / (tp + fn) - fp / (fp + tn)

    best = max(value(t) for t in np.unique(scores[5:]))
    assert value(chosen) == pytest.approx(best, abs=1e-12)
    assert choose_threshold(np.zeros(5), np.arange(5.0), rule) is None  # one class: no operating point


# ------------------------------------------------------------------------------------------------ stratified


def _run(base: Path) -> tuple[dict, pd.DataFrame]:
    folder = base / "results" / "vindr" / "pixels" / "logistic"
    return json.loads((folder / "metrics.json").read_text()), pd.read_parquet(folder / "predictions.parquet")


def test_group_metrics_and_worst_group_equal_a_direct_recomputation(base):
    metrics, predictions = _run(base)
    block = metrics["stratified"]["attributes"]["sex"]
    tasks = [t["name"] for t in metrics["targets"]]
    direct = {}
    for group in ("F", "M"):
        rows = predictions[predictions["group:sex"] == group]
        per_seed = [np.mean([roc_auc_score(part["label"], part["score"]) for _, part in seed_rows.groupby("task")])
                    for _, seed_rows in rows.groupby("seed")]
        direct[group] = float(np.mean(per_seed))
        entry = next(g for g in block["groups"] if g["group"] == group)
        assert entry["patients"] == min(rows.groupby("seed")["patient_id"].nunique())
        assert entry["metrics"]["auroc"]["macro"]["mean"] == pytest.approx(direct[group], abs=1e-9)
        assert entry["metrics"]["auroc"]["macro"]["ci_low"] <= direct[group] + 0.05  # a CI around it, patient bootstrap
    summary = block["summary"]["auroc"]["macro"]
    worst = min(direct, key=direct.get)
    assert summary["worst_group"] == worst and summary["worst"] == pytest.approx(direct[worst], abs=1e-9)
    assert summary["group_mean"] == pytest.approx(np.mean(list(direct.values())), abs=1e-9)
    assert summary["gap"] == pytest.approx(max(direct.values()) - min(direct.values()), abs=1e-9)
    assert set(tasks) <= set(block["summary"]["auroc"])
    stratified = pd.read_csv(base / "results" / "vindr" / "pixels" / "logistic" / "stratified.csv")
    assert set(stratified["attribute"]) == {"sex", "age"}


def test_false_negative_rate_per_group_at_the_validation_thresholds(base):
    metrics, predictions = _run(base)
    under = metrics["stratified"]["attributes"]["sex"]["underdiagnosis"]
    task = "Cardiomegaly"
    for group in ("F", "M"):
        rates = []
        for seed, rows in predictions[(predictions["task"] == task) & (predictions["group:sex"] == group)].groupby("seed"):
            threshold = metrics["thresholds"][str(seed)][task]
            positive = rows["label"] == 1
            rates.append(float((rows.loc[positive, "score"] < threshold).mean()))
        assert under[task]["groups"][group] == pytest.approx(np.mean(rates), abs=1e-12)


def test_the_ci_check_recomputes_the_stratified_block_and_names_a_tampered_number(base):
    from dataclasses import replace

    from cxrbench.analyses.check import recompute_stratified, stratified_drift
    from cxrbench.results.store import stored_runs

    run = next(r for r in stored_runs(base / "results", "vindr") if r.metrics.get("label_budget") is None)
    assert stratified_drift(run, recompute_stratified(run)) == []
    metrics = json.loads(json.dumps(run.metrics))
    metrics["stratified"]["attributes"]["sex"]["summary"]["auroc"]["macro"]["worst"] += 0.01
    problems = stratified_drift(replace(run, metrics=metrics), recompute_stratified(run))
    assert len(problems) == 1 and "stratified.attributes.sex.summary.auroc.macro.worst" in problems[0]


def test_small_groups_are_reported_as_too_small_not_as_numbers(base):
    metrics, predictions = _run(base)
    groups = metrics["stratified"]["attributes"]["age"]["groups"]
    minimum = metrics["stratified"]["min_group_patients"]
    for group in groups:
        patients = predictions[predictions["group:age"] == group["group"]].groupby("seed")["patient_id"].nunique().min()
        assert group["too_small"] == (patients < minimum)
        assert "metrics" in group  # kept for paper layouts that report every group, with a mark
    assert any(g["too_small"] for g in groups) and not all(g["too_small"] for g in groups)
    reported = [g for g in groups if not g["too_small"]]
    assert metrics["stratified"]["attributes"]["age"]["summary"]["auroc"]["macro"]["groups"] == len(reported)
    assert "too few patients" in (base / "results" / "vindr" / "pixels" / "logistic" / "table.md").read_text()


# ------------------------------------------------------------------------------------------------ bias protocol


def _bias_folder(base: Path, group: str) -> Path:
    return base / "results" / "vindr" / "pixels" / f"logistic_group-sex-{group}"


def test_each_group_trains_on_equal_patients_and_all_on_their_union(base):
    manifests = {g: pd.read_parquet(_bias_folder(base, g) / "splits.parquet") for g in ("F", "M", "All")}
    predictions = pd.read_parquet(_bias_folder(base, "F") / "predictions.parquet")
    sex = predictions.drop_duplicates("image_id").set_index("image_id")["group:sex"]
    for fold in range(3):
        train = {g: m[(m["seed"] == fold) & (m["split"] == "train")] for g, m in manifests.items()}
        counts = {g: train[g]["patient_id"].nunique() for g in ("F", "M")}
        assert counts["F"] == counts["M"] > 0
        assert set(train["All"]["image_id"]) == set(train["F"]["image_id"]) | set(train["M"]["image_id"])
        tests = {g: set(m.loc[(m["seed"] == fold) & (m["split"] == "test"), "image_id"]) for g, m in manifests.items()}
        assert tests["F"] == tests["M"] == tests["All"]  # every head is scored on the whole test split
    draws = [set(m.loc[(m["seed"] == f) & (m["split"] == "train"), "patient_id"]) for f in range(3) for m in [manifests["F"]]]
    assert draws[0] != draws[1]  # folds draw different patients
    metrics = json.loads((_bias_folder(base, "M") / "metrics.json").read_text())
    assert metrics["label_budget"] == {"train_group": {"attribute": "sex", "group": "M", "patients": None, "share": 0.8}}
    assert sex.isin(["F", "M"]).all()


def test_fold_scores_equal_a_direct_recomputation_and_mann_whitney_equals_scipy(base):
    folds = pd.read_csv(base / "results" / "vindr" / "bias_sex_folds.csv")
    assert set(folds["train_group"]) == {"F", "M", "All"} and set(folds["test_group"]) == {"F", "M"}
    assert len(folds) == 3 * 3 * 2
    predictions = pd.read_parquet(_bias_folder(base, "M") / "predictions.parquet")
    for (fold, group), rows in predictions.groupby(["seed", "group:sex"]):
        direct = np.mean([roc_auc_score(p["label"], p["score"]) for _, p in rows.dropna(subset=["label"]).groupby("task")])
        stored = folds[(folds["train_group"] == "M") & (folds["test_group"] == group) & (folds["fold"] == fold)]["value"]
        assert stored.item() == pytest.approx(direct, abs=1e-12)
    tests = pd.read_csv(base / "results" / "vindr" / "bias_sex_tests.csv")
    assert len(tests) == 2  # per test group: same-group folds against the other group's (All is the topline, not tested)
    for _, row in tests.iterrows():
        same = folds[(folds["train_group"] == row["test_group"]) & (folds["test_group"] == row["test_group"])]["value"]
        other = folds[(folds["train_group"] == row["other_group"]) & (folds["test_group"] == row["test_group"])]["value"]
        expected = mannwhitneyu(same, other, alternative="two-sided")
        assert row["p"] == pytest.approx(expected.pvalue, abs=1e-12)
        assert row["u"] == pytest.approx(expected.statistic, abs=1e-12)
    assert (base / "results" / "vindr" / "bias_sex.png").stat().st_size > 5000
    assert "trained on All" in (base / "results" / "vindr" / "bias_sex.md").read_text()


def test_bias_csvs_carry_each_runs_variant_beside_its_label(base):
    """The bias CSV files give every row its run's bare encoder, head and the label module's variant (a synthetic-data
    run here), beside the `model` label people read, as the other CSV files do."""
    runs = [run for run in stored_runs(base / "results", "vindr") if train_group(run)]
    assert {run.label for run in runs} == {runs[0].label} and SYNTHETIC_DATA in runs[0].variant
    expected = {"model": runs[0].label, "encoder": "pixels", "variant": variant_text(runs[0].variant), "head": "logistic"}
    for name in ("folds", "tests"):
        frame = pd.read_csv(base / "results" / "vindr" / f"bias_sex_{name}.csv", keep_default_na=False)
        assert len(frame) and {k: set(frame[k]) for k in expected} == {k: {v} for k, v in expected.items()}


def test_each_group_head_selects_on_its_own_groups_validation_images(base):
    """A head trained on one group sees only that group's validation images (the All head every group's); the test
    split is shared by every fold, and the Markdown says so."""
    plain = pd.read_parquet(base / "results" / "vindr" / "pixels" / "logistic" / "splits.parquet")
    predictions = pd.read_parquet(_bias_folder(base, "F") / "predictions.parquet")
    samples = load_benchmark("vindr", base / "vindr", {})[1].samples.set_index("image_id")
    sex = samples["sex"].astype(str)
    plain_val = set(plain.loc[(plain["seed"] == 0) & (plain["split"] == "val"), "image_id"])  # fold 0 = seed 0
    for group in ("F", "M", "All"):
        manifest = pd.read_parquet(_bias_folder(base, group) / "splits.parquet")
        val = set(manifest.loc[(manifest["seed"] == 0) & (manifest["split"] == "val"), "image_id"])
        expected = plain_val if group == "All" else {i for i in plain_val if sex[i] == group}
        assert val == expected and val
    assert predictions["image_id"].nunique() == len(set(plain.loc[plain["split"] == "test", "image_id"]))
    assert "Every fold is scored on the same test images" in (base / "results" / "vindr" / "bias_sex.md").read_text()


def test_bias_defaults_to_the_raydino_grid():
    result = runner.invoke(app, ["bias", "--help"], env={"COLUMNS": "300"})
    assert "[default: raydino-grid]" in result.output


def test_model_against_model_mann_whitney_equals_scipy():
    rng = np.random.default_rng(3)
    variants = {"a / raydino-grid": "", "b (random init) / raydino-grid": RANDOM_INIT, "c / raydino-grid": ""}
    rows = [{"model": model, "variant": variants[model], "train_group": trained, "test_group": tested, "fold": fold,
             "value": rng.normal(0.7 + 0.02 * m, 0.01)}
            for m, model in enumerate(variants)
            for trained in ("F", "M", "All") for tested in ("F", "M") for fold in range(6)]
    scores = pd.DataFrame(rows)
    scores.loc[3, "value"] = np.nan  # an undefined fold is left out, not counted
    versus = model_mann_whitney(scores)
    assert len(versus) == 3 * 2 * 3  # every pair of the 3 models, per training and test group
    for _, row in versus.iterrows():
        pick = lambda model: scores[(scores["model"] == model) & (scores["train_group"] == row["train_group"])
                                    & (scores["test_group"] == row["test_group"])]["value"].dropna()
        expected = mannwhitneyu(pick(row["model"]), pick(row["other_model"]), alternative="two-sided")
        assert row["u"] == expected.statistic and row["p"] == pytest.approx(expected.pvalue, abs=1e-15)
        assert row["difference"] == pytest.approx(pick(row["model"]).mean() - pick(row["other_model"]).mean(), abs=1e-15)
        assert (row["variant"], row["other_variant"]) == (variants[row["model"]], variants[row["other_model"]])


def test_bias_runs_resume_and_are_kept_off_tables_and_curves(base):
    common = [*HEAD, "--data-root", str(base / "vindr"), "--out", str(base / "results"), "--cache-dir", str(base / "cache")]
    before = (_bias_folder(base, "F") / "metrics.json").stat().st_mtime_ns
    result = runner.invoke(app, ["bias", "vindr", "--attribute", "sex", "--folds", "3", *common])
    assert result.exit_code == 0, result.output
    assert (_bias_folder(base, "F") / "metrics.json").stat().st_mtime_ns == before  # stored with these settings: kept
    result = runner.invoke(app, ["table", "vindr", "--out", str(base / "results")])
    assert result.exit_code == 0, result.output
    table = (base / "results" / "vindr" / "table_auprc.csv").read_text()
    assert "group" not in table  # the bias runs trained on a subset: not the benchmark's numbers


def test_too_few_patients_for_the_equal_draw_is_refused_with_the_fix(base):
    result = runner.invoke(app, ["bias", "vindr", "--attribute", "sex", "--folds", "2", "--group-patients", "100000",
                                 *HEAD, "--data-root", str(base / "vindr"), "--out", str(base / "other"),
                                 "--cache-dir", str(base / "cache")])
    assert result.exit_code == 2
    assert "fewer than the 100000 drawn from every group" in result.output and "--group-patients" in result.output
    result = runner.invoke(app, ["bias", "vindr", "--attribute", "race", "--folds", "2", *HEAD,
                                 "--data-root", str(base / "vindr")])
    assert result.exit_code == 2 and "declares no such group" in result.output


def test_benchmark_specs_name_their_groups():
    for name in ("vindr", "polcovid", "padchest-lateral", "nih-cxr14", "chexpert", "mimic-cxr", "mimic-demographics"):
        spec = benchmark_spec(name)
        assert spec.groups["sex"].labels == ("F", "M") and spec.groups["age"].names == ("0-35", "35-60", "60-100")


# ------------------------------------------------------------------------------------------------ segmentation (C.3)


@pytest.fixture
def small_groups(monkeypatch):
    """Groups of a few test patients count (the synthetic lungs are small): min_group_patients 2 for mimic-lungs."""
    from dataclasses import replace

    from cxrbench.registry import Entry

    original = Entry.spec

    def spec(self):
        found = original.fget(self)
        return replace(found, min_group_patients=2) if self.kind == "benchmarks" and self.name == "mimic-lungs" else found

    monkeypatch.setattr(Entry, "spec", property(spec))


def test_segmentation_dice_by_ethnicity_and_the_table_c3_layout(tmp_path, small_groups):
    """Table C.3's avg is the mean over test cases (the run's top line, as the paper's equals its Table 3), not the
    mean of the group means: the groups here differ in size, so the two differ. A worst group under
    min_group_patients is shown with its patient count and a mark, never dropped."""
    from dataclasses import replace

    from cxrbench.data.mimic.synthetic import write_synthetic_mimic_lungs
    from cxrbench.data.mimic.synthetic import write_mimic_iv
    from cxrbench.analyses.check import recompute_stratified
    from cxrbench.tables.latex import to_latex
    from cxrbench.tables.markdown import paper_markdown
    from cxrbench.tables.model import SMALL_GROUP_MARK
    from cxrbench.tables.paper import table_from_runs
    from cxrbench.tables.recipes import get_layout
    from cxrbench.results.store import stored_runs

    root = write_synthetic_mimic_lungs(tmp_path / "lungs", patients=60, size=32, seed=2)
    subjects = sorted({p.name[1:] for p in (root / "mimic-cxr-jpg" / "files").glob("p*/p*")})
    races = ["WHITE"] * 6 + ["ASIAN - CHINESE"] * 3 + ["BLACK/AFRICAN AMERICAN"]  # groups of unequal size
    people = [{"subject_id": s, "gender": "FM"[k % 2], "anchor_age": 50, "anchor_year": 2149} for k, s in enumerate(subjects)]
    admissions = [{"subject_id": s, "hadm_id": k, "race": races[k % len(races)]} for k, s in enumerate(subjects)]
    write_mimic_iv(root / "mimic-iv", people, admissions, [])
    out = tmp_path / "results"
    result = runner.invoke(app, ["run", "mimic-lungs", "--encoder", "pixels", "--data-root", str(root), "--out", str(out),
                                 "--cache-dir", str(tmp_path / "cache"), "--seeds", "1", "--bootstrap", "50",
                                 "--head-param", "epochs=3"])
    assert result.exit_code == 0, result.output
    folder = out / "mimic-lungs" / "pixels" / "seg-linear"
    metrics = json.loads((folder / "metrics.json").read_text())
    predictions = pd.read_parquet(folder / "predictions.parquet")
    block = metrics["stratified"]["attributes"]["ethnicity"]
    direct, sizes = {}, {}
    for group, rows in predictions.groupby("group:ethnicity"):
        cases = rows[rows["label"] == 1]  # `dice` averages the test cases whose reference has the structure
        direct[group] = float(np.mean([part["dice"].mean() for _, part in cases.groupby("task")]))
        sizes[group] = rows["image_id"].nunique()
        entry = next(g for g in block["groups"] if g["group"] == group)
        assert entry["metrics"]["dice"]["macro"]["mean"] == pytest.approx(direct[group], abs=1e-9)
    assert len(set(sizes.values())) > 1  # unequal groups
    cases = predictions[predictions["label"] == 1]
    case_mean = float(np.mean([part["dice"].mean() for _, part in cases.groupby("task")]))  # over every test case
    summary = block["summary"]["dice"]["macro"]
    assert summary["worst"] == pytest.approx(min(direct.values()), abs=1e-9)
    assert summary["group_mean"] == pytest.approx(np.mean(list(direct.values())), abs=1e-9)
    assert abs(case_mean - summary["group_mean"]) > 1e-4  # the two averages really differ on this fixture
    assert block["underdiagnosis"] == {}  # masks have no decision threshold
    result = runner.invoke(app, ["table", "--layout", "rad-dino-c3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "tables" / "rad-dino-c3.csv")
    ours = table[(table["source"] == "cxrbench") & (table["benchmark"] == "mimic-lungs")].set_index("column")["mean"]
    assert ours["avg"] == pytest.approx(case_mean, abs=1e-9) and ours["worst"] == pytest.approx(summary["worst"])
    assert ours["avg"] == pytest.approx(metrics["metrics"]["dice"]["macro"]["mean"], abs=1e-12)  # Table 3's number
    published = table[(table["model"] == "RAD-DINO / Linear") & (table["benchmark"] == "mimic-lungs")].set_index("column")["mean"]
    assert published["avg"] == pytest.approx(0.959) and published["worst"] == pytest.approx(0.956)
    # every group under min_group_patients: the worst cell still shows the worst group, marked with its count
    run = next(r for r in stored_runs(out, "mimic-lungs"))
    tiny = json.loads(json.dumps(run.metrics))
    tiny["stratified"]["min_group_patients"] = 10**6
    tiny["stratified"] = recompute_stratified(replace(run, metrics=tiny))
    assert all(g["too_small"] for g in tiny["stratified"]["attributes"]["ethnicity"]["groups"])
    paper = table_from_runs(get_layout("rad-dino-c3"), {"mimic-lungs": [replace(run, metrics=tiny)]})
    worst = min(direct, key=direct.get)
    patients = next(g["patients"] for g in tiny["stratified"]["attributes"]["ethnicity"]["groups"] if g["group"] == worst)
    markdown = paper_markdown(paper)
    assert f"{100 * direct[worst]:.1f}{SMALL_GROUP_MARK} (n={patients})" in markdown
    assert "fewer than the benchmark's min_group_patients" in markdown
    assert r"\textsuperscript{\ddag} (n=" in to_latex(paper)


# ------------------------------------------------------------------------------------------------ MIMIC age groups


@pytest.fixture
def no_finding_only(monkeypatch):
    """mimic-cxr with one target, No Finding: the small synthetic release has too few positives of the rarer labels for
    every age group's training draw (the real one has thousands)."""
    from dataclasses import replace

    from cxrbench.registry import Entry

    original = Entry.spec

    def spec(self):
        found = original.fget(self)
        if self.kind == "benchmarks" and self.name == "mimic-cxr":
            return replace(found, targets=tuple(t for t in found.targets if t.name == "No Finding"))
        return found

    monkeypatch.setattr(Entry, "spec", property(spec))


def test_bias_by_age_group_on_mimic_cxr_with_mimic_iv(tmp_path, no_finding_only):
    """RayDINO Fig. 4d's protocol on the MIMIC-CXR-JPG + MIMIC-IV layout: age at study from MIMIC-IV, three groups
    sampled to equal size, every head scored on every test group."""
    from cxrbench.data.mimic.synthetic import write_synthetic_mimic_cxr

    root = write_synthetic_mimic_cxr(tmp_path / "mimic", patients=300, size=32, seed=4)
    out = tmp_path / "results"
    result = runner.invoke(app, ["bias", "mimic-cxr", "--attribute", "age", "--folds", "2", *HEAD, "--data-root", str(root),
                                 "--out", str(out), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    folds = pd.read_csv(out / "mimic-cxr" / "bias_age_folds.csv")
    assert set(folds["train_group"]) == {"0-35", "35-60", "60-100", "All"}
    assert set(folds["test_group"]) == {"0-35", "35-60", "60-100"} and len(folds) == 4 * 3 * 2
    for fold in (0, 1):  # the same number of training patients in every group of a fold
        sizes = set()
        for group in ("0-35", "35-60", "60-100"):
            manifest = pd.read_parquet(out / "mimic-cxr" / "pixels" / f"logistic_group-age-{group}" / "splits.parquet")
            sizes.add(manifest[(manifest["seed"] == fold) & (manifest["split"] == "train")]["patient_id"].nunique())
        assert len(sizes) == 1 and sizes.pop() > 0
    tests = pd.read_csv(out / "mimic-cxr" / "bias_age_tests.csv")
    assert len(tests) == 3 * 2  # each test group against the two other training groups


def test_the_report_shows_groups_and_bias(base, tmp_path):
    from cxrbench.report import write_report

    index = write_report(base / "results", tmp_path / "report")
    html = index.read_text()
    assert "Bias by patient group" in html and "By patient group" in html and "too few patients" in html
    assert any(p.name.endswith("-bias-vindr-sex.png") for p in (tmp_path / "report").rglob("*.png"))
    assert "folds trained on the tested group against folds trained on another group" in html
    # a tests file missing a column is said in the report, not a KeyError that ends it
    copy = Path(shutil.copytree(base / "results", tmp_path / "copy"))
    tests = copy / "vindr" / "bias_sex_tests.csv"
    pd.read_csv(tests).drop(columns="p").to_csv(tests, index=False)
    damaged = write_report(copy, tmp_path / "report-damaged").read_text()
    assert "bias_sex_tests.csv lacks the column(s) p" in damaged
