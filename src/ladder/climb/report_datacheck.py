"""The report's "Data checks" section, from the ``datacheck.json`` the climb wrote first.

What the checks found (:mod:`ladder.climb.datacheck`): the warnings (an error would have
stopped the climb), the leaked and duplicate record counts, the references per split, the
prompt and training lengths per rung and model, and one record per rung as the model sees
it, with the training loss mask marked (``<mark>``: the tokens the loss is on).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ladder.climb.datacheck import DATACHECK_FILE, commonest_shares
from ladder.climb.report_tables import e

__all__ = ["datacheck_section"]


def datacheck_section(out: Path) -> list[str]:
    """The section's HTML parts (none when the folder has no ``datacheck.json``)."""
    path = out / DATACHECK_FILE
    if not path.is_file():
        return []
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    sizes = ", ".join(f"{k} {v}" for k, v in data["splits"].items())
    head = (
        f"<p>Checked before the climb ({e(sizes)} records; all of it in "
        f"<code>{e(DATACHECK_FILE)}</code>): {len(data['leakage'])} records repeat an earlier "
        f"split, {len(data['duplicates'])} repeat one of their own split.</p>"
    )
    findings = "".join(
        f"<li class='{e(f['action'])}'>{e(f['action'])}: {e(f['message'])}</li>"
        for f in data["findings"]
    )
    parts = ["<h2>Data checks</h2>", head]
    parts.append(
        f"<ul class='findings'>{findings}</ul>" if findings else "<p>No rule breached.</p>"
    )
    parts.append(_labels(data))
    if data["lengths"]:
        parts.append(_lengths(data["lengths"]))
    parts += [_example(x) for x in data["examples"]]
    return parts


def _labels(data: dict[str, Any]) -> str:
    rows = []
    # A datacheck.json from before distinct_references lists only the commonest 20.
    distinct = data.get("distinct_references", {})
    for split, counts in data["labels"].items():
        n = distinct.get(split, len(counts))
        top = commonest_shares(counts, data["splits"][split], n)
        rows.append(f"<tr><td>{e(split)}</td><td>{n}</td><td>{e(top)}</td></tr>")
    return (
        "<table class='labels'><tr><th>split</th><th>distinct references</th>"
        f"<th>commonest (share of the split)</th></tr>{''.join(rows)}</table>"
    )


def _lengths(lengths: list[dict[str, Any]]) -> str:
    cells = ["model", "rung", "prompt", "context", "longest prompt", "test cut"]
    cells += ["max_seq_len", "longest train", "train cut"]
    out = ["<table class='lengths'><tr>" + "".join(f"<th>{c}</th>" for c in cells) + "</tr>"]
    for r in lengths:
        trains = r["max_seq_len"] is not None
        values = [
            r["model"],
            r["rung"],
            r["prompt"],
            r["context"] or "–",
            r["longest_prompt"],
            f"{r['test_cut']}/{r['test_records']}",
            r["max_seq_len"] if trains else "–",
            r["longest_train"] if trains else "–",
            f"{r['train_cut']}/{r['train_records']}" if trains else "–",
        ]
        out.append("<tr>" + "".join(f"<td>{e(v)}</td>" for v in values) + "</tr>")
    return "\n".join(out) + "</table>"


def _example(example: dict[str, Any]) -> str:
    head = f"{example['rung']} on {example['model']}"
    parts = [
        f"<details class='seen'><summary>{e(head)}: the first test prompt as the model sees it "
        f"({e(example['prompt_tokens'])} tokens)</summary><pre>{e(example['seen'])}</pre>"
    ]
    if "loss_mask" in example:
        marked = "".join(
            f"<mark>{e(run['text'])}</mark>" if run["trained"] else e(run["text"])
            for run in example["loss_mask"]
        )
        parts.append(
            f"<p>Train record {e(example['train_record'])} as trained "
            f"({e(example['train_tokens'])} tokens; marked: the tokens the loss is on)</p>"
            f"<pre class='mask'>{marked}</pre>"
        )
    return "".join(parts) + "</details>"
