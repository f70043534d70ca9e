"""Gate results as card components: a verdict banner, the gated checks, the reported-only ones, and their details.

Shared by the gates card (TrainFlow) and the DistillFlow card. A result is a ``GateResult.to_dict()``: suite, name,
metric, threshold (text), actual, interval, passed, detail, gated. Checks with ``gated: False`` were measured and
reported but did not take part in the decision (a fairness slice too small to judge, a review rate without a
budget): they get their own table and never read as PASS.
"""

from __future__ import annotations

import html
import math
import re
from typing import Any

from metaflow.cards import Markdown, Table

TONES = {  # background, accent (left border), text
    "good": ("#e6f4ea", "#1e7e34", "#0b3d17"),
    "bad": ("#fdecea", "#b3261e", "#5f1410"),
    "warn": ("#fff4e5", "#b26a00", "#4a2c00"),
}
OUTSIDE = "†"  # marks an estimate outside its own interval
BREAK = "\u200b"  # zero-width space: where a long check name may wrap in a table (before each "[")
# Tables after a lead-in line of class mf-nowrap keep every cell on one line, with less padding than the cards' 20 px;
# after mf-checks (the gated checks) too, except the check name, which wraps only before a "["; after mf-wrap-last,
# except the last column (free text). Cards render Markdown's HTML as is, so these rules reach the table that follows
# the lead-in (its next sibling); where they do not apply, cells simply wrap.
TABLE_STYLE = ("<style>.mf-nowrap + .tableContainer td, .mf-checks + .tableContainer td, "
               ".mf-wrap-last + .tableContainer td {white-space: nowrap; padding: 0.5rem 0.6rem}"
               ".mf-checks + .tableContainer td:nth-child(3), .mf-wrap-last + .tableContainer td:last-child "
               "{white-space: normal}</style>")


def fmt(value: Any) -> str:
    """A number as a reviewer reads it: 4 decimals, thousands separators for large values, '-' for none."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else str(value)
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    magnitude = abs(value)
    if isinstance(value, int) or magnitude >= 10_000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:,.1f}"
    return f"{value:.4f}" if magnitude >= 0.001 or value == 0 else f"{value:.2e}"


def interval_text(interval: list[float] | tuple[float, float] | None) -> str:
    """``[low, high]`` formatted like the values, or '-' without an interval."""
    return "-" if not interval else f"[{fmt(interval[0])}, {fmt(interval[1])}]"


def threshold_text(threshold: str) -> str:
    """The threshold as one short line: the comparison signs as symbols."""
    return threshold.replace(">=", "≥").replace("<=", "≤")


def banner(tone: str, title: str, text: str = "") -> Markdown:
    """A coloured one-line verdict (``tone``: good, bad or warn); the text is escaped."""
    background, accent, color = TONES[tone]
    rest = f" {html.escape(text)}" if text else ""
    return Markdown(f'<div style="background:{background};border-left:6px solid {accent};color:{color};'
                    f'padding:0.8rem 1rem;border-radius:4px;text-align:left;font-size:1.05rem">'
                    f"<strong>{html.escape(title)}</strong>{rest}</div>")


def outside_interval(result: dict[str, Any]) -> bool:
    """True when the point estimate lies outside its own bootstrap interval."""
    interval, actual = result.get("interval"), result.get("actual")
    if not interval or actual is None or any(math.isnan(v) for v in (actual, *interval)):
        return False
    tolerance = 1e-12 * max(1.0, abs(actual))
    return bool(actual < interval[0] - tolerance or actual > interval[1] + tolerance)


def outside_note(results: list[dict[str, Any]]) -> str | None:
    """The one-line explanation for the estimates that lie outside their own interval, or None when none does."""
    names = [r["name"] for r in results if outside_interval(r)]
    if not names:
        return None
    why = ("a calibration error is biased upward under resampling (a resample repeats some rows and drops others, "
           "so its bins are noisier and their errors do not cancel), so the percentile interval sits above the "
           "estimate" if any("calibration" in n for n in names) else
           "the statistic is biased under resampling, so its percentile interval is shifted away from the estimate")
    return (f"{OUTSIDE} {', '.join(names)}: the estimate lies outside its own bootstrap interval because {why}; "
            "the gate judges the interval's bound named in the threshold, the cautious side.")


def gated_rows(results: list[dict[str, Any]]) -> list[list[Any]]:
    """One row per gated check: result, suite, check, threshold, value (marked when outside its interval),
    interval."""
    return [["PASS" if r["passed"] else "FAIL", r["suite"], wrappable(r["name"]), threshold_text(r["threshold"]),
             fmt(r["actual"]) + (f" {OUTSIDE}" if outside_interval(r) else ""), interval_text(r.get("interval"))]
            for r in results if r["gated"]]


def _why_not_gated(result: dict[str, Any]) -> str:
    """The part of a reported-only check's detail that says why it was not judged."""
    clauses = [c.strip() for c in re.split(r";\s|\.\s", str(result.get("detail", ""))) if c.strip()]
    if result.get("actual") is None and clauses:
        return clauses[0]
    reason = next((c for c in clauses if "not gated" in c or "fewer than" in c), None)
    return reason or "reported only"


def reported_rows(results: list[dict[str, Any]]) -> list[list[Any]]:
    """One row per check that was reported but not gated: suite, check, value, why it was not judged."""
    return [[r["suite"], wrappable(r["name"]), fmt(r["actual"]), _why_not_gated(r)] for r in results if not r["gated"]]


def suite_line(results: list[dict[str, Any]]) -> str:
    """Per suite (HTML): gated checks passed of gated, and how many were only reported."""
    parts = []
    for suite in dict.fromkeys(r["suite"] for r in results):
        mine = [r for r in results if r["suite"] == suite]
        gated = [r for r in mine if r["gated"]]
        failed = sum(not r["passed"] for r in gated)
        text = f"{html.escape(suite)} {len(gated) - failed}/{len(gated)} passed"
        if failed:
            text += f" (<strong>{failed} failed</strong>)"
        if len(mine) > len(gated):
            text += f", {len(mine) - len(gated)} not gated"
        parts.append(text)
    return " · ".join(parts)


def _item(result: dict[str, Any], text: str) -> str:
    """One list item of HTML: the check's ``suite/name`` as code, then ``text`` (escaped)."""
    return (f"<li><code>{html.escape(result['suite'])}/{html.escape(result['name'])}</code>"
            f"{'' if result['gated'] else ' (not gated)'}: {html.escape(text)}</li>")


def details(results: list[dict[str, Any]]) -> list[Any]:
    """The failed checks' details as a list, then every check's detail in a collapsed block (HTML: the card's
    Markdown would read brackets, underscores or "<" in a detail as markup)."""
    failed = [r for r in results if r["gated"] and not r["passed"]]
    out: list[Any] = []
    if failed:
        out.append(Markdown('<div style="text-align:left"><strong>Why it failed</strong><ul>'
                            + "".join(_item(r, r["detail"] or "no detail recorded") for r in failed) + "</ul></div>"))
    items = "".join(_item(r, r["detail"] or "-") for r in results)
    out.append(Markdown(f'<details style="text-align:left"><summary>Details of every check ({len(results)})'
                        f"</summary><ul>{items}</ul></details>"))
    return out


def lead_in(text_html: str, kind: str = "mf-nowrap") -> Markdown:
    """A line of HTML placed right before a table whose cells keep to one line (``kind``: mf-nowrap, mf-checks,
    mf-wrap-last)."""
    return Markdown(f'{TABLE_STYLE}<div class="{kind}" style="text-align:left">{text_html}</div>')


def wrappable(name: str) -> str:
    """A check name that may wrap before each "[" in a table cell (a zero-width space; it reads the same)."""
    return name.replace("[", BREAK + "[")


def check_components(results: list[dict[str, Any]]) -> list[Any]:
    """The gated checks' table (with the interval note), the reported-only checks, and the details."""
    out: list[Any] = [lead_in(f"<strong>Suites</strong>: {suite_line(results)}", "mf-checks"),
                      Table(gated_rows(results) or [["-", "-", "no gated checks", "-", "-", "-"]],
                            headers=["result", "suite", "check", "threshold", "value", "interval"])]
    note = outside_note(results)
    if note:
        out.append(Markdown(f'<div style="text-align:left">{html.escape(note)}</div>'))
    reported = reported_rows(results)
    if reported:
        out += [lead_in("<strong>Reported, not gated</strong>: measured, but not part of the decision", "mf-wrap-last"),
                Table(reported, headers=["suite", "check", "value", "why not gated"])]
    return out + details(results)
