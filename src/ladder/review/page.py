"""The review page: one HTML file with its script, served by :mod:`ladder.review.server`.

Plain HTML and JavaScript (no build step, nothing fetched from elsewhere). Every control is
a labelled form element or a button, the current record is announced through a live region,
and everything can be done from the keyboard: 1 / 2 the left / right answer is better, b
both are bad, e write a correction (Ctrl+Enter saves it, Escape cancels), j / k next /
previous record, u undo the record's judgment.
"""

from __future__ import annotations

__all__ = ["PAGE"]

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ladder review</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:75rem;padding:1rem;color:#222}
h1{font-size:1.2rem;margin:.2rem 0}
pre{white-space:pre-wrap;word-break:break-word;background:#f6f6f6;padding:.5rem;margin:.2rem 0}
fieldset{border:1px solid #ccc;margin:.5rem 0;padding:.4rem .6rem}
label{margin-right:.8rem}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:1rem}
.side{border:2px solid #ccc;padding:.5rem}
.side.better{border-color:#1a7f37;background:#eefbf0}
.side.worse{border-color:#b35900}
.tag{display:inline-block;padding:0 .4rem;margin-left:.3rem;border-radius:.3rem;background:#ddd;
font-size:.8rem;vertical-align:middle}
input[type=number]{width:6rem}
.tag.flip{background:#ffd6a5}.tag.diff{background:#cde4ff}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2rem .4rem;text-align:left}
button{margin:.2rem .3rem .2rem 0}kbd{border:1px solid #999;border-radius:3px;padding:0 .2rem}
textarea{width:100%;min-height:5rem;font:inherit}
.status{min-height:1.4rem;color:#1a5e20}.error{color:#b00020}
:focus{outline:3px solid #4a90e2}
</style></head>
<body data-ready="no">
<header><h1>Review: <span id="run"></span></h1>
<p><span id="progress"></span> · preferences: <code id="prefs"></code> · corrections:
<code id="corr"></code></p></header>
<fieldset><legend>Compare</legend>
<label>Left <select id="left"></select></label>
<label>Right <select id="right"></select></label></fieldset>
<fieldset><legend>Filter</legend>
<label>Rung <select id="f-rung"><option value="">any rung</option></select></label>
<label>Answer <select id="f-correct"><option value="">any</option>
<option value="correct">correct (full score)</option><option value="wrong">wrong</option>
</select></label>
<label>Score from <input id="f-min" type="number" step="any" size="5"></label>
<label>to <input id="f-max" type="number" step="any" size="5"></label>
<label><input id="f-open" type="checkbox"> not judged yet</label></fieldset>
<main id="record" tabindex="-1" aria-live="polite"></main>
<p id="status" class="status" role="status"></p>
<section id="editor" hidden><label for="correction">Corrected answer
(<kbd>Ctrl</kbd>+<kbd>Enter</kbd> saves, <kbd>Esc</kbd> cancels)</label>
<textarea id="correction"></textarea>
<button id="save-correction">Save correction</button>
<button id="cancel-correction">Cancel</button></section>
<nav aria-label="Judge"><button id="b-left"><kbd>1</kbd> left better</button>
<button id="b-right"><kbd>2</kbd> right better</button>
<button id="b-bad"><kbd>b</kbd> both bad</button>
<button id="b-edit"><kbd>e</kbd> write a correction</button>
<button id="b-undo"><kbd>u</kbd> undo</button>
<button id="b-prev"><kbd>k</kbd> previous</button>
<button id="b-next"><kbd>j</kbd> next</button></nav>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const S = {run: null, shown: [], pos: 0};
const text = (v) => v === null || v === undefined ? "" :
  (typeof v === "string" ? v : JSON.stringify(v));
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(text(k)));
  return e;
}
function say(msg, bad) { $("status").textContent = msg; $("status").className =
  bad ? "status error" : "status"; }
function current() { return S.shown[S.pos]; }
function matches(rec) {
  if ($("f-open").checked && S.run.judgments[rec.id]) return false;
  const rung = $("f-rung").value, want = $("f-correct").value;
  const lo = parseFloat($("f-min").value), hi = parseFloat($("f-max").value);
  const names = rung ? [rung] : Object.keys(rec.answers);
  return names.some((n) => {
    const a = rec.answers[n];
    if (!a) return false;
    if (want || !isNaN(lo) || !isNaN(hi)) {
      if (a.score === null) return false;
      if (want === "correct" && a.score < 1) return false;
      if (want === "wrong" && a.score >= 1) return false;
      if (!isNaN(lo) && a.score < lo) return false;
      if (!isNaN(hi) && a.score > hi) return false;
    }
    return true;
  });
}
function refilter() {
  const id = current() && current().id;
  S.shown = S.run.records.filter(matches);
  const at = S.shown.findIndex((r) => r.id === id);
  S.pos = at >= 0 ? at : 0;
  render();
}
function side(rec, name, which, verdict) {
  const a = rec.answers[name] || {text: "(no answer)", score: null};
  let cls = "side";
  if (verdict === which) cls += " better";
  else if (verdict === "both_bad" || (verdict && verdict !== which)) cls += " worse";
  return el("section", {class: cls, id: "side-" + which, "aria-label": which + " answer"},
    el("h3", {}, (which === "left" ? "1 · " : "2 · ") + name +
      (a.score === null ? "" : " (score " + a.score + ")")), el("pre", {}, a.text));
}
function render() {
  const box = $("record"); box.replaceChildren();
  const done = Object.keys(S.run.judgments).length;
  $("progress").textContent = done + " of " + S.run.records.length + " judged; " +
    S.shown.length + " shown";
  const rec = current();
  if (!rec) { box.append(el("p", {}, "No record matches the filters.")); return; }
  const j = S.run.judgments[rec.id];
  const tags = el("span");
  if (rec.flipped) tags.append(el("span", {class: "tag flip"}, "flip"));
  if (rec.disagree) tags.append(el("span", {class: "tag diff"}, "disagreement"));
  box.append(el("h2", {}, "Record " + (S.pos + 1) + " of " + S.shown.length + " · " + rec.id,
    tags));
  box.append(el("h3", {}, "Input"), el("pre", {id: "input"}, rec.input));
  box.append(el("h3", {}, "Reference"), el("pre", {id: "reference"}, rec.reference));
  const table = el("table", {id: "answers"}, el("tr", {}, el("th", {}, "rung"),
    el("th", {}, "answer"), el("th", {}, "score")));
  for (const n of S.run.systems) {
    const a = rec.answers[n];
    if (a) table.append(el("tr", {}, el("td", {}, n), el("td", {}, a.text),
      el("td", {}, a.score === null ? "" : a.score)));
  }
  box.append(el("h3", {}, "Every rung"), table);
  const verdict = j ? j.verdict : "";
  box.append(el("div", {class: "pair"}, side(rec, $("left").value, "left", verdict),
    side(rec, $("right").value, "right", verdict)));
  const said = !j ? "Not judged yet." : ({left: "Left is better.", right: "Right is better.",
    both_bad: "Both are bad.", "": "Corrected."}[j.verdict] +
    (j.correction ? " Correction: " + j.correction : ""));
  box.append(el("p", {id: "verdict", "data-verdict": j ? j.verdict || "corrected" : ""}, said));
  document.body.dataset.record = rec.id;
}
async function post(path, body) {
  const r = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify(body)});
  const out = await r.json();
  if (!r.ok) throw new Error(out.error || r.statusText);
  return out;
}
async function judge(verdict, correction) {
  const rec = current(); if (!rec) return;
  const left = $("left").value, right = $("right").value;
  if (left === right) { say("Pick two different rungs to compare.", true); return; }
  const old = S.run.judgments[rec.id];
  if (correction === undefined) correction = old ? old.correction : "";
  if (verdict === null) verdict = old ? old.verdict : "";
  try {
    const out = await post("/api/judge", {id: rec.id, left, right, verdict, correction});
    S.run.judgments[rec.id] = out.saved;
    say("Saved " + rec.id + ".");
    document.body.dataset.saved = String(out.judged);
    if (correction === (old ? old.correction : "")) move(1); else render();
  } catch (e) { say("Not saved: " + e.message, true); }
}
async function undo() {
  const rec = current(); if (!rec) return;
  try { const out = await post("/api/forget", {id: rec.id}); delete S.run.judgments[rec.id];
    document.body.dataset.saved = String(out.judged); say("Judgment removed."); render();
  } catch (e) { say("Not removed: " + e.message, true); }
}
function move(step) {
  if (!S.shown.length) return;
  S.pos = Math.min(Math.max(S.pos + step, 0), S.shown.length - 1); render();
}
function edit() {
  const rec = current(); if (!rec) return;
  const j = S.run.judgments[rec.id];
  $("correction").value = j && j.correction ? j.correction : text(rec.reference);
  $("editor").hidden = false; $("correction").focus();
}
function closeEditor() { $("editor").hidden = true; $("record").focus(); }
function saveCorrection() {
  const value = $("correction").value; closeEditor(); judge(null, value);
}
const KEYS = {"1": () => judge("left"), "2": () => judge("right"), b: () => judge("both_bad"),
  e: edit, j: () => move(1), k: () => move(-1), u: undo};
document.addEventListener("keydown", (ev) => {
  if (ev.target === $("correction")) {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); saveCorrection(); }
    else if (ev.key === "Escape") { ev.preventDefault(); closeEditor(); }
    return;
  }
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (["INPUT", "SELECT", "TEXTAREA"].includes(ev.target.tagName)) return;
  const act = KEYS[ev.key];
  if (act) { ev.preventDefault(); act(); }
});
const CLICKS = {"b-left": KEYS["1"], "b-right": KEYS["2"], "b-bad": KEYS.b, "b-edit": edit,
  "b-undo": undo, "b-prev": KEYS.k, "b-next": KEYS.j, "save-correction": saveCorrection,
  "cancel-correction": closeEditor};
for (const [id, fn] of Object.entries(CLICKS)) $(id).addEventListener("click", fn);
for (const id of ["f-rung", "f-correct", "f-min", "f-max", "f-open"])
  $(id).addEventListener("change", refilter);
for (const id of ["left", "right"]) $(id).addEventListener("change", render);
async function start() {
  const r = await fetch("/api/run");
  if (!r.ok) { say("Cannot load the run: " + r.status, true); return; }
  S.run = await r.json();
  $("run").textContent = S.run.run;
  $("prefs").textContent = S.run.files.preferences;
  $("corr").textContent = S.run.files.corrections;
  for (const n of S.run.systems) {
    for (const id of ["left", "right", "f-rung"]) $(id).append(el("option", {value: n}, n));
  }
  $("left").value = S.run.systems[0];
  $("right").value = S.run.systems[S.run.systems.length - 1];
  refilter();
  $("record").focus();
  document.body.dataset.ready = "yes";
}
start();
</script></body></html>
"""
