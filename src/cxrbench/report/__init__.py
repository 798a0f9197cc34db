"""`cxrbench report`: a static HTML report (index.html + figures/, opens from file:// with no network) of everything
stored under a results folder: run tables, paper-layout tables, paired comparisons, ROC/PR curves with bootstrap
bands, reliability diagrams, label efficiency, explain heatmaps and segmentation overlays.

Modules, one job each: `collect` (what is stored), `comparisons` (the `cxrbench compare` CSVs), `curves` (ROC/PR
bands), `reliability` (calibration bins), `figures` (PNG files), `html` (escaped page pieces), `sections` (what each
part of the page shows), `build` (staging, progress and the atomic swap).
"""

from cxrbench.report.build import write_report

__all__ = ["write_report"]
