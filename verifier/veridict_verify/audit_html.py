"""The auditor's HTML report of a checked evidence package: one self-contained page (inline CSS,
charts as inline SVG, no outside resource) a regulator can read and keep."""

from __future__ import annotations

from html import escape
from typing import Any

from veridict_verify.bias import FOUR_FIFTHS
from veridict_verify.evidence import AuditResult

_CSS = """
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#111}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:.3rem .5rem;
text-align:left;vertical-align:top}th{background:#f3f3f3}.ok{color:#0a6b2c}.failed{color:#b00020}
.pending,.skipped{color:#8a5a00}.verdict{font-size:1.3rem;font-weight:bold}
.num{text-align:right;font-variant-numeric:tabular-nums}
"""


def _status(status: str) -> str:
    return f'<span class="{escape(status)}">{escape(status.upper())}</span>'


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else escape(str(value))


def _completeness(facts: dict[str, Any]) -> str:
    package = facts.get("package")
    if not package:
        return "<p>The package header could not be read: nothing is established.</p>"
    batches = package["batches"]
    span = f"batches {batches[0]}&ndash;{batches[-1]}" if batches else "no batch"
    anchored = package.get("anchored_by") or "no verified anchor"
    system = package["system"]
    return (
        f"<p>The system log of <b>{escape(str(system['name']))}</b> "
        f"(<code>{escape(str(system['slug']))}</code>, log id <code>{escape(str(system['stream']))}"
        f"</code>) of log <code>{escape(str(package['origin']))}</code>, from size "
        f"{package['start']['size']} to {package['end']['size']}: {package['entries']} entries "
        f"({package['decisions']} decisions, {package['erased']} of them erased), sealed in "
        f"{span}, anchored by {escape(anchored)}.</p>"
    )


def _chart(report: dict[str, Any]) -> str:
    """Selection rate per group with its 95 % Wilson interval, and the four-fifths line drawn at
    0.8 × the highest rate among the groups LL144 includes."""
    groups = report["groups"]
    row, left, width = 28, 190, 420
    height = row * len(groups) + 40
    best = max(
        (
            g["rates"]["selection_rate"]["value"]
            for g in groups
            if not g["ll144_excluded"] and g["rates"]["selection_rate"]["value"] is not None
        ),
        default=None,
    )
    parts = [
        f'<svg role="img" width="{left + width + 180}" '
        f'height="{height}" aria-label="Selection rate per group with 95% interval">'
    ]
    for tick in (0, 0.25, 0.5, 0.75, 1):
        x = left + tick * width
        parts.append(
            f'<line x1="{x}" y1="10" x2="{x}" y2="{height - 25}" stroke="#ddd"/>'
            f'<text x="{x}" y="{height - 8}" font-size="11" text-anchor="middle">{tick:g}</text>'
        )
    for position, group in enumerate(groups):
        rate = group["rates"]["selection_rate"]
        y = 15 + position * row
        parts.append(
            f'<text x="{left - 8}" y="{y + 14}" font-size="12" text-anchor="end">'
            f"{escape(group['key'])} (n={group['count']})</text>"
        )
        if rate["value"] is None:
            continue
        colour = "#b00020" if group["four_fifths"] else "#2b6cb0"
        parts.append(
            f'<rect x="{left}" y="{y + 4}" width="{rate["value"] * width:.1f}" height="14" '
            f'fill="{colour}" opacity="0.75">'
            f"<title>selection rate {rate['value']:.3f}</title></rect>"
        )
        if rate["low"] is not None and rate["high"] is not None:
            low, high = left + rate["low"] * width, left + rate["high"] * width
            parts.append(
                f'<line x1="{low:.1f}" y1="{y + 11}" x2="{high:.1f}" y2="{y + 11}" '
                f'stroke="#111" stroke-width="1.5"/>'
                f'<line x1="{low:.1f}" y1="{y + 6}" x2="{low:.1f}" y2="{y + 16}" stroke="#111"/>'
                f'<line x1="{high:.1f}" y1="{y + 6}" x2="{high:.1f}" y2="{y + 16}" stroke="#111"/>'
            )
    if best is not None:
        x = left + FOUR_FIFTHS * best * width
        parts.append(
            f'<line x1="{x:.1f}" y1="10" x2="{x:.1f}" y2="{height - 25}" stroke="#b00020" '
            f'stroke-dasharray="4 3"/><text x="{x + 3:.1f}" y="10" font-size="10" '
            f'fill="#b00020">four-fifths of the highest rate</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _bias(facts: dict[str, Any]) -> str:
    found = facts.get("bias") or {}
    report = found.get("report")
    if not report:
        return "<p>No bias report was recomputed (see the <code>bias</code> step).</p>"
    rows = "".join(
        f"<tr><td>{escape(g['key'])}</td><td class=num>{g['count']}</td>"
        f"<td class=num>{g['selected']}</td>"
        f"<td class=num>{_number(g['rates']['selection_rate']['value'])} "
        f"[{_number(g['rates']['selection_rate']['low'])}, "
        f"{_number(g['rates']['selection_rate']['high'])}]</td>"
        f"<td class=num>{_number(g['rates']['tpr']['value'])}</td>"
        f"<td class=num>{_number(g['rates']['fpr']['value'])}</td>"
        f"<td class=num>{_number(g['impact_ratio'])}</td>"
        f"<td>{'yes' if g['four_fifths'] else 'no' if g['four_fifths'] is False else 'n/a'}</td>"
        "</tr>"
        for g in report["groups"]
    )
    excluded = found.get("excluded_erased", 0)
    note = (
        f"<p>{excluded} decisions of erased subjects cannot be opened and are left out here; "
        "the server's counts keep them, so its figures may differ by those decisions.</p>"
        if excluded
        else ""
    )
    differences = found.get("differences")
    compared = ""
    if differences is not None:
        compared = (
            "<p>Compared with the given report: equal in every figure.</p>"
            if not differences
            else "<p>Compared with the given report, these figures differ:</p><table><tr>"
            "<th>figure</th><th>recomputed</th><th>given</th></tr>"
            + "".join(
                f"<tr><td><code>{escape(d['path'])}</code></td><td>{escape(repr(d['ours']))}</td>"
                f"<td>{escape(repr(d['theirs']))}</td></tr>"
                for d in differences
            )
            + "</table>"
        )
    return (
        f"<p>Recomputed from {report['total']} opened decisions over "
        f"{escape(', '.join(report['attributes']))} ({escape(report['outcome'])} outcome), "
        f"reference group {escape(str(report['reference']['group']))}, definitions of "
        "docs/bias.md.</p>"
        + note
        + _chart(report)
        + "<table><tr><th>group</th><th>decisions</th><th>favourable</th>"
        "<th>selection rate [95 % Wilson]</th><th>TPR</th><th>FPR</th><th>impact ratio</th>"
        f"<th>below four-fifths</th></tr>{rows}</table>" + compared
    )


def audit_html(result: AuditResult) -> str:
    """The report page of a checked package."""
    report = result.report
    verdict = report.as_dict()["verdict"]
    steps = "".join(
        f"<tr><td><code>{escape(step.name)}</code></td><td>{_status(step.status)}</td>"
        f"<td>{escape(step.detail)}</td></tr>"
        for step in report.steps
    )
    oversight = "".join(
        f"<tr><td><code>{escape(step.name)}</code></td><td>{_status(step.status)}</td>"
        f"<td>{escape(step.detail)}</td></tr>"
        for step in report.steps
        if step.name.startswith("oversight")
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>Veridict evidence check</title>"
        f"<style>{_CSS}</style></head><body>"
        "<h1>Evidence package check</h1>"
        f'<p class="verdict">Verdict: {_status(verdict)}</p>'
        "<h2>Completeness</h2>"
        + _completeness(result.facts)
        + "<h2>Steps</h2><table><tr><th>step</th><th>result</th><th>detail</th></tr>"
        + steps
        + "</table><h2>Bias</h2>"
        + _bias(result.facts)
        + "<h2>Human oversight (AI Act)</h2>"
        + (
            f"<table><tr><th>fact</th><th>result</th><th>counts</th></tr>{oversight}</table>"
            if oversight
            else "<p>Not checked: a ledger step failed.</p>"
        )
        + "<p>Checked offline by <code>veridict-audit</code> against keys and a TSA CA the "
        "auditor pinned; review deadlines rest on the operator's statement.</p>"
        "</body></html>"
    )
