"""Tables: one model of a paper table (`model.PaperTable`: columns, rows, cells with CI, marks and notes) with
Markdown, CSV and LaTeX renderers, the run and per-benchmark tables, and the paper tables themselves, each one YAML
in `results/recipes/` (its runs, layout, published CSV and deviations) found by scanning that folder."""
