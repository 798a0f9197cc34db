"""How finished runs are shown: each run's table with its caveats and folder, and the jobs that failed."""

from __future__ import annotations

from cxrbench.cli.common import VALUES
from cxrbench.console import error, print_table, progress_display, say, warn
from cxrbench.errors import CxrbenchError


def run_and_show(specs: list, storage, machine, command: str, show=None) -> list:
    """`specs` through the one fan-out with the terminal's bars; each finished job shown (`show(spec, results)`,
    default: its runs' tables), failed jobs listed last and the command failing when any did. Returns the
    finished jobs' results."""
    from cxrbench.runs.fanout import run_specs

    with progress_display() as progress:
        outcomes = run_specs(specs, storage, machine, progress, command)
    for spec, outcome in zip(specs, outcomes):
        if outcome.error is None:
            (show or show_runs)(spec, outcome.value)
    failed = [outcome for outcome in outcomes if outcome.error is not None]
    if len(failed) == 1 and len(outcomes) == 1:
        raise CxrbenchError(failed[0].error)
    for outcome in failed:
        error(f"{outcome.label}: {outcome.error}" + (f" (log: {outcome.log})" if outcome.log else ""))
    if failed:
        raise CxrbenchError(f"{len(failed)} of {len(outcomes)} job(s) failed; fix what is said above and run the same "
                            "command again (finished runs are kept; add --overwrite only to replace them).")
    return [result for outcome in outcomes for result in outcome.value]


def show_runs(spec, results: list) -> None:
    """Each run's table, titled with its folder's name as its head (its tag and label budget show)."""
    from cxrbench.results.labels import method_label, run_label, variant_notes
    from cxrbench.tables.runs import bootstrap_caveats, run_display_table

    for result in results:
        identity = result.metrics.get("run_identity") or {}
        head = method_label(result.head, selected_on_test=(identity.get("head") or {}).get("select_on") == "test")
        label = run_label(result.encoder, head, variant_notes(result.encoder, identity))
        print_table(run_display_table(result.metrics, result.tasks).T, f"{spec.benchmark} · {label}\n{VALUES}", "task")
        for caveat in bootstrap_caveats(result.metrics):
            warn(caveat)
        say(f"results: {result.folder}")
