"""Run summaries as people read them: a markdown report for the Prefect UI and terminals."""

from __future__ import annotations

from syncline.sync import SyncSummary, summary_row
from syncline.two_way_sync import TwoWaySummary, two_way_row


def summary_markdown(summary: SyncSummary) -> str:
    row = summary_row(summary)
    lines = [
        f"# {summary.integration}",
        "",
        f"Run `{summary.flow_run_id or 'local'}`"
        + (" (full refresh)" if summary.full_refresh else " (incremental)"),
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| {name.replace('_', ' ')} | {value} |" for name, value in row.items()),
    ]
    if summary.dead_lettered:
        lines += [
            "",
            f"**{summary.dead_lettered} record(s) were dead-lettered.** Inspect them with "
            f"`syncline dead-letters {summary.integration}` and retry them with the "
            "`replay-dead-letters` flow once the cause is fixed.",
        ]
    return "\n".join(lines) + "\n"


def two_way_markdown(summary: TwoWaySummary) -> str:
    row = two_way_row(summary)
    lines = [
        f"# {summary.integration} (both ways)",
        "",
        f"Run `{summary.flow_run_id or 'local'}`"
        + (" (full refresh)" if summary.full_refresh else " (incremental)"),
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| {name.replace('_', ' ')} | {value} |" for name, value in row.items()),
    ]
    if summary.held:
        lines += [
            "",
            f"**{summary.held} conflict(s) are held for a person** (policy `manual`): each dead "
            "letter holds both versions. Make the two records agree (edit either one) and the "
            "next run carries on.",
        ]
    if summary.dead_lettered:
        lines += [
            "",
            f"**{summary.dead_lettered} record(s) or pair(s) were dead-lettered.** Inspect them "
            f"with `syncline dead-letters {summary.integration}`; every run retries them.",
        ]
    return "\n".join(lines) + "\n"
