"""`write_report`: a static page of everything stored under a results folder, checked as files (figures, alt text,
no external resources, escaping, atomic replacement), as numbers (bootstrap bands, pooled ECE) and in a real
headless Chromium (no console errors, every image loaded), including that the browser check does fail on a broken
image, an uncaught exception and a console error."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.errors import CxrbenchError, DataError
from cxrbench.metrics.calibration import ExpectedCalibrationError
from cxrbench.registry import benchmark_spec
from cxrbench.report import write_report
from cxrbench.report.build import MARKER
from cxrbench.report.collect import HEATMAPS_PER_EXPLAIN, OVERLAYS_PER_RUN
from cxrbench.report.comparisons import COLUMNS, read_comparison
from cxrbench.results.comparisons import TEST_NOTES
from cxrbench.report.curves import FPR_GRID, RECALL_GRID, binary_curves
from cxrbench.report.reliability import run_reliability
from cxrbench.results.store import explain_folder, json_writer, parquet_writer, run_folder, write_run
from cxrbench.specs import BootstrapSpec, TargetSpec

CHROMIUM = next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium): "
                                                             "the page is checked in a real headless browser")
EVIL_ENCODER = '<img src=x onerror="alert(1)">'
EVIL_TARGET = "<script>alert('t')</script> a$b"
VINDR_TASKS = ["Lung Opacity", "Cardiomegaly", "Pleural thickening", "Aortic enlargement", "Pulmonary fibrosis",
               "Tuberculosis", "Pleural effusion"]


# ---------------------------------------------------------------- a results folder: one real run, the rest written here

def _entry(mean: float) -> dict:
    per_seed = {"0": mean - 0.01, "1": mean + 0.01}
    return {"per_seed": per_seed, "mean": mean, "std": 0.014, "ci_low": mean - 0.05, "ci_high": mean + 0.05,
            "bootstrap_median": mean}


def _metrics(benchmark: str, encoder: str, head: str, columns, metrics, **extra) -> dict:
    return {"benchmark": benchmark, "encoder": encoder, "head": head, "seeds": [0, 1],
            "metrics": {m: {**{c: _entry(0.5 + 0.01 * i) for i, c in enumerate(columns)}, "macro": _entry(0.55)}
                        for m in metrics}, **extra}


def _png(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 16), colour).save(path)


def _multiclass_predictions(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for seed in (0, 1):
        for i in range(60):
            label = i % 3
            logits = rng.normal(size=3) + 2.0 * np.eye(3)[label]
            probabilities = np.exp(logits) / np.exp(logits).sum()
            rows.append({"image_id": f"img{i}", "patient_id": f"p{i // 2}", "seed": seed, "task": "diagnosis",
                         "label": float(label), "score": float(probabilities.argmax()), "probabilities": probabilities})
    return pd.DataFrame(rows)


def _comparison_csv(path: Path) -> None:
    rows = [("pixels", "knn", "macro", 0.05, 0.01, 0.09, "better"),
            ("pixels", "knn", "Cardiomegaly", -0.04, -0.08, -0.01, "worse"),
            (EVIL_ENCODER, "linear", EVIL_TARGET, 0.01, -0.03, 0.05, "not significant")]
    frame = pd.DataFrame([{
        "benchmark": "vindr", "metric": "auprc", "reference": "rad-dino", "reference_variant": "", "encoder": encoder,
        "variant": "synthetic data" if encoder == "pixels" else "", "head": head, "target": target,
        "mean_reference": 0.4, "mean_encoder": 0.4 + diff, "diff": diff, "ci_low": low, "ci_high": high,
        "p_bootstrap": 0.01, "p_delong": 0.02, "p_ttest": None, "p_adjusted": 0.03, "correction": "holm", "verdict": verdict,
    } for encoder, head, target, diff, low, high, verdict in rows], columns=list(COLUMNS))
    path.parent.mkdir(parents=True)
    frame.to_csv(path, index=False)


@pytest.fixture(scope="module")
def store(vindr_root, tmp_path_factory) -> Path:
    """A real kNN run of the `pixels` encoder on synthetic VinDr (full data and half the training labels), and written
    by hand: a random-init run with a hostile name, a multiclass run with predictions, a segmentation run with
    overlays, an explain run with heatmaps (and one damaged PNG) and a `cxrbench compare` CSV."""
    base = tmp_path_factory.mktemp("report")
    out = base / "out"
    result = CliRunner().invoke(app, ["run", "vindr", "--encoder", "pixels", "--head", "knn", "--head-param", "k=[10]",
                                      "--data-root", str(vindr_root), "--out", str(out), "--cache-dir", str(base / "cache"),
                                      "--seeds", "2", "--bootstrap", "50", "--train-fraction", "0.5,1"])
    assert result.exit_code == 0, result.output
    assert (out / "vindr/pixels/knn/predictions.parquet").is_file() and (out / "vindr/pixels/knn_train-0.5").is_dir()

    write_run(run_folder(out, "vindr", "evil", "linear"), {"metrics.json": json_writer(_metrics(
        "vindr", EVIL_ENCODER, "linear", VINDR_TASKS, ("auprc", "auroc"), run_identity={"weights": "random (seed 0)"}))})
    candid = benchmark_spec("candid-ptx").tasks  # an encoder the paper reports: its overview has the published row
    write_run(run_folder(out, "candid-ptx", "rad-dino", "linear"), {"metrics.json": json_writer(_metrics(
        "candid-ptx", "rad-dino", "linear", candid, ("auprc",), run_identity={"weights": "random:seed=0"}))})
    diagnosis = TargetSpec("diagnosis", "multiclass", classes=("normal", "pneumonia", "covid-19"))
    write_run(run_folder(out, "polcovid", "pixels", "linear"), {
        "metrics.json": json_writer(_metrics("polcovid", "pixels", "linear", ["diagnosis"], ("balanced_accuracy",),
                                             targets=[{"name": "diagnosis", "kind": "multiclass",
                                                       "classes": list(diagnosis.classes)}])),
        "predictions.parquet": parquet_writer(_multiclass_predictions(np.random.default_rng(0)))})
    lungs = {"name": "lungs", "kind": "mask", "structures": ["left lung", "right lung"], "lateral": True}
    folder = write_run(run_folder(out, "jsrt", "pixels", "seg-linear"), {"metrics.json": json_writer(_metrics(
        "jsrt", "pixels", "seg-linear", lungs["structures"], ("dice",), targets=[lungs]))})
    for i in range(OVERLAYS_PER_RUN + 2):
        _png(folder / "overlays" / f"case{i}.png", (0, 40 * i, 0))

    summary = {"encoder": "pixels", "head": "attentive", "seeds": [0, 1], "n_images_with_boxes": 12,
               "macro_accuracy": {"mean": 0.4, "std": 0.05, "ci_low": 0.3, "ci_high": 0.5},
               "findings": {"Cardiomegaly": {"boxes": 5, "images": 5, "accuracy_mean": 0.6, "accuracy_std": 0.1},
                            "Aortic enlargement": {"boxes": 7, "images": 7, "accuracy_mean": 0.2, "accuracy_std": 0.0}}}
    explain = write_run(explain_folder(out, "vindr", "pixels"), {"metrics.json": json_writer({
        "kind": "explain", "benchmark": "vindr", "encoder": "pixels", "head": "attentive", "seeds": [0, 1],
        "run_identity": {"weights": "sha256:0", "synthetic_data": True}, "explain": summary})})
    for finding in ("Cardiomegaly", "Aortic enlargement"):
        for i in range(HEATMAPS_PER_EXPLAIN):
            _png(explain / "heatmaps" / finding / f"image{i}.png", (200, 10 * i, 0))
    (explain / "heatmaps" / "Cardiomegaly" / "image00-damaged.png").write_bytes(b"not a png")
    _comparison_csv(out / "vindr" / "comparisons" / "auprc.csv")
    return out


class RecordingProgress:
    def __init__(self):
        self.tasks: list[list] = []  # [description, total, advanced]

    def task(self, description: str, total: int, transient: bool = False):
        record = [description, total, 0]
        self.tasks.append(record)

        def advance(n: int) -> None:
            record[2] += n

        return advance

    def note(self, message: str) -> None:
        pass


@pytest.fixture(scope="module")
def report(store, tmp_path_factory) -> tuple[Path, RecordingProgress]:
    progress = RecordingProgress()
    index = write_report(store, tmp_path_factory.mktemp("dest") / "report", progress)
    return index, progress


class _Page(HTMLParser):
    """The tags of a page with their attributes, and its text."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def of(self, tag: str) -> list[dict]:
        return [attrs for name, attrs in self.tags if name == tag]


# ---------------------------------------------------------------- files and content

def test_report_figures_are_local_pngs_with_alt_text(report):
    index, progress = report
    folder = index.parent
    page = _Page(index.read_text(encoding="utf-8"))
    images = page.of("img")
    assert len(images) >= 10
    for image in images:
        assert image["alt"].strip(), image
        assert image["src"].startswith("figures/") and "//" not in image["src"]
        assert (folder / image["src"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {p.name for p in (folder / "figures").iterdir()} == {Path(i["src"]).name for i in images}
    # offline: no external stylesheet, script, font or link target
    assert not page.of("link") and all("src" not in attrs for attrs in page.of("script"))
    assert not re.search(r"(https?:)?//[a-z]", " ".join(a.get("href", "") for a in page.of("a")))
    assert "@import" not in index.read_text() and "url(" not in index.read_text()
    # bounded pictures: overlays and heatmaps (the damaged heatmap is never copied)
    alts = [image["alt"] for image in images]
    assert sum("Segmentation overlay" in alt for alt in alts) == OVERLAYS_PER_RUN
    heatmaps = [alt for alt in alts if "Attention heatmap" in alt]
    assert len(heatmaps) == HEATMAPS_PER_EXPLAIN
    assert sum("Cardiomegaly" in alt for alt in heatmaps) == HEATMAPS_PER_EXPLAIN // 2  # spread over the findings
    # one unit of progress per part of the page
    assert [(total, done) for _, total, done in progress.tasks] == [(progress.tasks[0][1], progress.tasks[0][1])]
    # written atomically: no staging folder left beside the report, the marker that allows replacing it
    assert (folder / MARKER).is_file()
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".report.") and not p.name.endswith(".lock")] == []


def test_report_shows_tables_curves_comparisons_and_flags(report):
    index, _ = report
    text = index.read_text(encoding="utf-8")
    plain = " ".join(_Page(text).text)
    assert "mean ± std over seeds [95% bootstrap CI]" in plain
    # paper-layout table with its published rows, and the run tables (mean ± std [CI], in %)
    assert "RAD-DINO Table 1a" in plain and "RAD-DINO (published)" in plain
    assert text.count('<tr class="published">') >= 1  # a benchmark overview with the paper's row (CANDID-PTX)
    assert re.search(r"\d+\.\d ± \d+\.\d \[\d+\.\d, \d+\.\d\]", plain)
    # synthetic-data and random-weight runs are flagged, in the banner and as badges
    assert "pixels (synthetic data) / knn" in plain and "random init" in plain
    assert text.count('class="flag"') >= 3
    assert "pixels (synthetic data) / knn · 50% of the training labels" in plain
    alts = " ".join(image["alt"] for image in _Page(text).of("img"))
    assert "ROC and precision-recall curves of pixels (synthetic data) / knn" in alts
    assert "Reliability diagrams of pixels / linear" in alts and "diagnosis (ECE" in alts  # multiclass
    assert "Forest plot of 3 paired differences in AUPRC against rad-dino" in alts
    assert "Label-efficiency curves of vindr" in alts
    for verdict in ("better", "worse", "not-significant"):
        assert text.count(f'<tr class="verdict-{verdict}">') == 1
    assert "pixels (synthetic data) / knn · Macro" in plain  # the compared encoder's run is flagged too
    # the forest plot table shows diff [CI] on the metric's scale (percentage points)
    assert "5.0 [1.0, 9.0]" in plain
    assert all(" ".join(note.split()) in plain for note in TEST_NOTES)  # what each p-value measures


def test_user_text_is_escaped(report):
    text = report[0].read_text(encoding="utf-8")
    for hostile in (EVIL_ENCODER, "<script>alert('t')</script>"):
        assert hostile not in text
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in text
    assert "&lt;script&gt;alert(&#x27;t&#x27;)&lt;/script&gt; a$b" in text
    assert len(_Page(text).of("script")) == 1  # the page's own load check, nothing injected


def test_rewrite_replaces_a_report_and_refuses_other_folders(tmp_path):
    store = tmp_path / "out"
    write_run(run_folder(store, "vindr", "pixels", "linear"), {"metrics.json": json_writer(_metrics(
        "vindr", "pixels", "linear", VINDR_TASKS, ("auprc",)))})
    dest = tmp_path / "report"
    first = write_report(store, dest)
    (dest / "figures" / "stale.png").write_bytes(b"old")
    second = write_report(store, dest)
    assert first == second == dest / "index.html" and not (dest / "figures" / "stale.png").exists()
    assert {p.name for p in tmp_path.iterdir()} == {"out", "report", ".report.lock"}
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(CxrbenchError, match="not a cxrbench report"):
        write_report(store, other)
    assert (other / "holiday.jpg").is_file()
    with pytest.raises(CxrbenchError, match="would replace the results folder"):
        write_report(store, tmp_path)
    with pytest.raises(CxrbenchError, match="Nothing stored"):
        write_report(tmp_path / "photos", tmp_path / "empty-report")
    inside = write_report(store, store / "report")  # the default place: never read as a benchmark of its own
    again = write_report(store, store / "report")
    assert inside == again and [h.get("id") for h in _Page(again.read_text()).of("h2")] == ["paper-tables", "b0-vindr"]


def test_comparison_csv_is_checked(tmp_path):
    path = tmp_path / "auprc.csv"
    pd.DataFrame({"benchmark": ["vindr"], "metric": ["auprc"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="lacks the column"):
        read_comparison(path)


# ---------------------------------------------------------------- numbers

def _binary_predictions(rng: np.random.Generator, n: int = 300) -> pd.DataFrame:
    labels = (rng.random(n) < 0.3).astype(float)
    frames = []
    for seed in (0, 1):
        scores = np.round(rng.normal(size=n) + 1.2 * labels, 1)  # rounded: ties, as real scores have
        frames.append(pd.DataFrame({"image_id": [f"i{i}" for i in range(n)], "patient_id": [f"p{i // 3}" for i in range(n)],
                                    "seed": seed, "task": "finding", "label": labels, "score": scores}))
    return pd.concat(frames, ignore_index=True)


def test_curves_are_the_seed_mean_of_sklearns_curves_inside_their_band():
    predictions = _binary_predictions(np.random.default_rng(1))
    [curves] = binary_curves(predictions, [TargetSpec("finding")], BootstrapSpec(seed=0), resamples=200)
    roc, pr = [], []
    for _, part in predictions.groupby("seed"):
        fpr, tpr, _ = roc_curve(part["label"], part["score"], drop_intermediate=False)
        roc.append(np.interp(FPR_GRID, fpr, tpr))
        precision, recall, _ = precision_recall_curve(part["label"], part["score"])
        precision, recall = precision[::-1], recall[::-1]  # by recall ascending, as thresholds fall
        first = np.searchsorted(recall, RECALL_GRID - 1e-12, side="left")
        pr.append(precision[first])
    assert np.allclose(curves.roc.curve, np.mean(roc, axis=0))
    assert np.allclose(curves.pr.curve, np.mean(pr, axis=0))
    aucs = [roc_auc_score(part["label"], part["score"]) for _, part in predictions.groupby("seed")]
    assert abs(np.trapezoid(curves.roc.curve, FPR_GRID) - np.mean(aucs)) < 0.01  # the grid is fine enough for AUROC
    for band in (curves.roc, curves.pr):
        inside = (band.low - 1e-9 <= band.curve) & (band.curve <= band.high + 1e-9)
        assert inside.mean() > 0.9 and (band.high - band.low).max() < 0.5
    assert curves.resamples == 200 and abs(curves.prevalence - predictions["label"].mean()) < 1e-12


def test_band_leaves_out_resamples_without_both_classes():
    predictions = _binary_predictions(np.random.default_rng(2), n=12)
    predictions["label"] = 0.0
    predictions.loc[predictions["image_id"] == "i0", "label"] = 1.0  # one positive: many resamples miss it
    [curves] = binary_curves(predictions, [TargetSpec("finding")], BootstrapSpec(unit="image", seed=0), resamples=100)
    assert 0 < curves.resamples < 100 and np.isfinite(curves.roc.low).all()


def test_reliability_pools_seeds_and_its_ece_is_the_metrics():
    predictions = _binary_predictions(np.random.default_rng(3))
    predictions["score"] = 1 / (1 + np.exp(-predictions["score"]))
    multiclass = _multiclass_predictions(np.random.default_rng(4))
    targets = [TargetSpec("finding"), TargetSpec("diagnosis", "multiclass", classes=("a", "b", "c"))]
    binary, top_label = run_reliability(pd.concat([predictions, multiclass], ignore_index=True), targets)
    metric = ExpectedCalibrationError()
    assert binary.rows == len(predictions) and abs(binary.ece - metric.score(predictions["label"].to_numpy(),
                                                                             predictions["score"].to_numpy())) < 1e-12
    probabilities = np.stack(multiclass["probabilities"].to_numpy())
    assert top_label.kind == "multiclass" and abs(top_label.ece - metric.score(multiclass["label"].to_numpy(), probabilities)) < 1e-12


# ---------------------------------------------------------------- a real browser

WINDOW = (1400, 900)  # a laptop browser window: every table must fit its width


def browser_problems(index: Path, profile: Path) -> list[str]:
    """What headless Chromium reports opening the page from file://: console messages (the page writes none, so any
    is a problem: Chromium logs every level as INFO), uncaught exceptions, images not loaded and errors the page's
    own load check recorded (data-* attributes on <body> in the dumped DOM)."""
    done = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                           f"--window-size={WINDOW[0]},{WINDOW[1]}",
                           f"--user-data-dir={profile}", "--no-first-run", "--virtual-time-budget=5000", "--dump-dom",
                           index.as_uri()], capture_output=True, text=True, timeout=90)
    problems = [line for line in done.stderr.splitlines() if re.search(r":CONSOLE[:(]", line) or "Uncaught" in line]
    body = next((attrs for tag, attrs in _Page(done.stdout).tags if tag == "body"), {})
    expected = len(_Page(index.read_text(encoding="utf-8")).of("img"))
    if body.get("data-images") != str(expected):
        problems.append(f"the page's load check saw {body.get('data-images')} of {expected} images (exit {done.returncode})")
    if body.get("data-images-broken"):
        problems.append(f"images not loaded: {body['data-images-broken']}")
    if body.get("data-page-errors"):
        problems.append(f"errors while loading: {body['data-page-errors']}")
    if body.get("data-wide-tables") not in ("0", None):
        problems.append(f"{body['data-wide-tables']} tables wider than a {WINDOW[0]} px window")
    return problems


@needs_chromium
def test_page_loads_in_headless_chromium(report, tmp_path):
    assert browser_problems(report[0], tmp_path / "profile") == []


@needs_chromium
@pytest.mark.parametrize("damage, expected", [
    ("image", "images not loaded: figures/"),
    ("throw", "Uncaught Error: deliberate"),
    ("console", "deliberate console error"),
    ("wide", "tables wider than a 1400 px window"),
])
def test_browser_check_fails_on_a_broken_page(report, tmp_path, damage, expected):
    copy = Path(shutil.copytree(report[0].parent, tmp_path / "copy"))
    index = copy / "index.html"
    if damage == "image":
        next((copy / "figures").glob("*.png")).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    elif damage == "wide":
        index.write_text(index.read_text().replace("</body>", '<table style="width:3000px"><tr><td>x</td></tr></table></body>'))
    else:
        script = {"throw": 'throw new Error("deliberate");', "console": 'console.error("deliberate console error");'}[damage]
        index.write_text(index.read_text().replace("</body>", f"<script>{script}</script></body>"))
    problems = browser_problems(index, tmp_path / "profile")
    assert any(expected in problem for problem in problems), problems


# ---------------------------------------------------------------- figures readable at any name length

def test_forest_plot_labels_are_whole_and_inside_the_figure():
    """Two rows that differ only at the end of a long label stay apart (no label is cut), and no label's first
    letters fall off the figure's left edge."""
    from cxrbench.report.figures import forest_figure

    encoder = "rad-dino (random init, 56 px, synthetic data) / raydino-grid [tag: lr-sweep-with-a-long-name]"
    names = [f"{encoder} · Pleural effusion", f"{encoder} · Pleural thickening", "pixels / knn · Macro"]
    rows = pd.DataFrame({"diff": [0.01, -0.02, 0.0], "ci_low": [-0.01, -0.04, -0.02], "ci_high": [0.03, 0.0, 0.02],
                         "verdict": ["not significant", "worse", "not significant"]})
    figure = forest_figure(rows, names, "AUPRC: difference from pixels", "AUPRC difference (points)", 100.0)
    renderer = figure.canvas.get_renderer()
    labels = figure.axes[0].get_yticklabels()
    shown = [" ".join(label.get_text().split()) for label in labels]
    for name, verdict in zip(names, rows["verdict"]):
        assert f"{name}: {verdict}".replace(" ", "") in {text.replace(" ", "") for text in shown}
    assert len(set(shown)) == 3
    for label in labels:
        box = label.get_window_extent(renderer)
        assert box.x0 >= 0 and box.x1 <= figure.bbox.width, label.get_text()
