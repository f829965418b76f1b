"""``evaluation.html``: the verdicts of ``drive-viz evaluate`` per method, with its two plots.

One self-contained page (the plots are inlined as PNG data URIs, no script): a table with,
per method, whether it passes the randomization check at the stated threshold and whether its
deletion and insertion curves beat the random pixel order, the same sentences the console
prints, then the plots. Paths and names are escaped.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from drive_viz.atomic import write_atomic
from drive_viz.render.png import png_bytes

STYLE = """body { background: #18181c; color: #e8e8ea; font: 14px/1.4 system-ui, sans-serif;
  margin: 0 auto; max-width: 1400px; padding: 16px; }
table { border-collapse: collapse; } th, td { padding: 3px 10px; text-align: left; }
tr:nth-child(even) { background: #222228; }
.pass { color: #7ee08a; font-weight: 600; } .fail { color: #ff7070; font-weight: 600; }
.undecided { color: #c8c8cc; } img { max-width: 100%; display: block; margin: 8px 0; }
ul { margin: 2px 0; } p.note { color: #c8c8cc; font-size: 13px; }"""


def _cell(value: bool | None, yes: str, no: str) -> str:
    if value is None:
        return "<td class='undecided'>undecided</td>"
    return f"<td class='pass'>{yes}</td>" if value else f"<td class='fail'>{no}</td>"


def write_evaluation_page(path: str | Path, report: Mapping[str, Any],
                          lines: Mapping[str, list[str]],
                          pictures: Mapping[str, np.ndarray],
                          sections: Mapping[str, list[str]] | None = None) -> None:
    """Write ``evaluation.html`` atomically. ``report``: the evaluation.json content (with
    ``verdicts``); ``lines``: the verdict sentences per method; ``pictures``: the plots as RGB
    uint8 (H, W, 3), shown in this order; ``sections``: further findings, heading -> lines
    (warnings, the optional causal tests), shown after the verdicts when not empty."""
    rows = []
    for method, entry in report["verdicts"].items():
        rand, deletion, insertion = (entry[k] for k in ("randomization", "deletion",
                                                        "insertion"))
        rows.append(
            f"<tr><th>{html.escape(method)}</th>"
            f"<td>{rand['rho']:+.2f}</td>{_cell(rand['passes'], 'passes', 'fails')}"
            f"<td>{deletion['auc']:.2f}</td>{_cell(deletion['better'], 'better', 'worse')}"
            f"<td>{insertion['auc']:.2f}</td>{_cell(insertion['better'], 'better', 'worse')}"
            "</tr>")
    first = next(iter(report["verdicts"].values()), None)
    threshold = first["randomization"]["threshold"] if first else float("nan")
    random_row = ""
    if first:
        random_row = (f"<tr><th>random pixel order</th><td></td><td></td>"
                      f"<td>{first['deletion']['random_auc']:.2f}</td><td></td>"
                      f"<td>{first['insertion']['random_auc']:.2f}</td><td></td></tr>")
    sentences = "".join(
        f"<li><b>{html.escape(method)}</b><ul>"
        + "".join(f"<li>{html.escape(line)}</li>" for line in method_lines) + "</ul></li>"
        for method, method_lines in lines.items())
    findings = "".join(
        f"<h2>{html.escape(heading)}</h2><ul>"
        + "".join(f"<li>{html.escape(line.strip())}</li>" for line in section_lines) + "</ul>"
        for heading, section_lines in (sections or {}).items() if section_lines)
    images = "".join(
        f"<h2>{html.escape(name.replace('_', ' '))}</h2><img alt='{html.escape(name)}' "
        "src='data:image/png;base64,"
        f"{base64.b64encode(png_bytes(picture, name)).decode('ascii')}'>"
        for name, picture in pictures.items())
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>drive-viz evaluation</title>
<style>{STYLE}</style></head><body>
<h1>Can these maps be trusted?</h1>
<p>recording {html.escape(str(report['recording']))}, camera {html.escape(str(report['camera']))},
model {html.escape(str(report['model']))}, {len(report['frames'])} frames</p>
<table><tr><th>method</th><th>rho, all layers re-drawn</th>
<th>randomization check (passes below {threshold:g})</th><th>deletion AUC</th>
<th>deletion vs random order</th><th>insertion AUC</th><th>insertion vs random order</th></tr>
{''.join(rows)}{random_row}</table>
<p class="note">Randomization check (Adebayo et al. 2018): a map that stays similar (Spearman
rank correlation rho at or above {threshold:g}) when every layer of the model is re-drawn at
random does not explain the model. Deletion: removing the most salient pixels first should move
the steering sooner than a random order (higher AUC is better); insertion: adding them back
first should restore it sooner (lower AUC is better).</p>
<h2>Verdicts</h2><ul>{sentences}</ul>
{findings}
{images}
</body></html>
"""
    write_atomic(path, page)
