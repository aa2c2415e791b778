"""Data checks before a climb, on generated tasks with planted faults.

Planted: a test input that repeats a train input (case and spaces changed), a test input
that is a train input with its last word changed (a near-duplicate), a dev input copied
from train, a train input twice with two labels, and over-long inputs in test and train.
Each must be found with its record ids, and only those; a rule set to error stops
``ladder check-data`` and ``ladder climb`` with one line, before the climb writes anything.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from ladder.cli.main import main
from ladder.climb import ClimbOptions, climb, load_task
from ladder.climb.datacheck import SplitGuard, raise_on_errors, record_id
from ladder.climb.datacheck_prompts import run_data_checks
from ladder.climb.rungs import ModelCache
from ladder.climb.task.checks import ChecksSpec
from ladder.errors import ConfigError

# Words and letters of the tiny test tokenizer's corpus, which it encodes and decodes whole.
WORDS = [
    "the",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "a",
    "bird",
    "tree",
    "big",
    "small",
    "red",
    "blue",
    "green",
    "quick",
    "slow",
]
LETTERS = "abcdefghiklmnopqrstuvwy"
LABELS = ["red", "blue", "green"]


def _sentence(rng: random.Random, n: int) -> str:
    """``n`` words, each one of WORDS with two random letters: no overlap by chance."""
    return " ".join(rng.choice(WORDS) + rng.choice(LETTERS) + rng.choice(LETTERS) for _ in range(n))


def _records(rng: random.Random, n: int, words: int) -> list[dict[str, Any]]:
    return [{"text": _sentence(rng, words), "label": rng.choice(LABELS)} for _ in range(n)]


def planted_task(
    folder: Path,
    *,
    checks: str = "",
    rungs: str = "  - zero_shot\n",
    models: str = "[]",
    words: int = 30,
    long_words: int = 0,
) -> Path:
    """A label task of random inputs (no overlap by chance) with the faults planted.

    Test records carry an ``id`` (t0, t1 ...); the others are named by file and line.
    ``long_words``: one more test and one more train record that long.
    """
    rng = random.Random(7)
    train, dev, test = (_records(rng, n, words) for n in (40, 10, 20))
    test[3]["text"] = "  " + train[5]["text"].upper().replace(" ", "   ") + " "  # exact
    test[7]["text"] = train[9]["text"].rsplit(" ", 1)[0] + " changed"  # near: last word
    dev[2]["text"] = train[11]["text"]  # dev repeats train
    train[21] = {
        "text": train[20]["text"],
        "label": "green" if train[20]["label"] != "green" else "red",
    }
    if long_words:
        test.append({"text": _sentence(rng, long_words), "label": "red"})
        train.append({"text": _sentence(rng, long_words), "label": "red"})
    for i, record in enumerate(test):
        record["id"] = f"t{i}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("dev", dev), ("test", test)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = folder / "task.yaml"
    task.write_text(
        "name: planted\n"
        "data: {train: train.jsonl, dev: dev.jsonl, test: test.jsonl, input: text, "
        "reference: label}\n"
        "instruction: Name the colour.\n"
        "output: {type: label, labels: [red, blue, green]}\n"
        "good_enough: 0.5\n"
        "params: {max_tokens: 4}\n"
        "optimise: false\n"
        f"models: {models}\n"
        f"{checks}"
        f"rungs:\n{rungs}"
    )
    return task


def test_planted_leakage_and_duplicates_are_found_with_their_record_ids(tmp_path: Path) -> None:
    task = load_task(planted_task(tmp_path))
    report = run_data_checks(task, [])
    found = {(e["split"], e["record"], e["other_record"], e["kind"]) for e in report.leakage}
    assert found == {
        ("dev", "dev.jsonl:3", "train.jsonl:12", "exact"),
        ("test", "t3", "train.jsonl:6", "exact"),
        ("test", "t7", "train.jsonl:10", "near"),
    }
    near = next(e for e in report.leakage if e["kind"] == "near")
    assert 0.8 <= near["similarity"] < 1.0  # 27 of 29 shingles shared: Jaccard 0.93
    assert report.duplicates == [
        {
            "split": "train",
            "record": "train.jsonl:22",
            "first": "train.jsonl:21",
            "conflicting": True,
        }
    ]
    assert (
        set(report.labels) == {"train", "dev", "test"} and sum(report.labels["test"].values()) == 20
    )
    # leakage is an error by default, duplicates a warning
    rules = [(f.rule, f.action, f.split, f.record, f.count) for f in report.findings]
    assert rules == [
        ("leakage", "error", "dev", "dev.jsonl:3", 1),
        ("leakage", "error", "test", "t3", 2),
        ("duplicates", "warn", "train", "train.jsonl:22", 1),
    ]
    with pytest.raises(ConfigError) as err:
        raise_on_errors(report)
    line = str(err.value)
    assert line.startswith(
        "task.yaml: checks.leakage: dev record dev.jsonl:3 repeats train record train.jsonl:12 "
        "(exact); 1 of 10 dev records overlap an earlier split, over max_leaked 0;"
    )
    assert "\n" not in line and line.endswith("(and 1 more: ladder check-data TASK)")


def test_thresholds_and_actions_come_from_the_task(tmp_path: Path) -> None:
    # 2 of 20 test records (10%) and 1 of 10 dev records (10%) leak: within max_leaked 0.1
    lenient = planted_task(tmp_path / "a", checks="checks: {max_leaked: 0.1}\n")
    assert run_data_checks(load_task(lenient), []).errors == []
    strict = "checks: {leakage: off, duplicates: error, near_duplicate: 0.95}\n"
    report = run_data_checks(load_task(planted_task(tmp_path / "b", checks=strict)), [])
    assert report.leakage == [] and [f.rule for f in report.errors] == ["duplicates"]
    with pytest.raises(ConfigError, match=r"checks.duplicates: train record train.jsonl:22 repeats "
                       r"train.jsonl:21 with another reference"):  # fmt: skip
        raise_on_errors(report)
    # a higher near-duplicate threshold than the planted pair's similarity misses it
    report = run_data_checks(
        load_task(planted_task(tmp_path / "c", checks="checks: {near_duplicate: 0.99}\n")), []
    )
    assert {e["kind"] for e in report.leakage} == {"exact"}


def test_check_data_cli_exits_2_on_leakage_and_writes_its_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = planted_task(tmp_path / "t")
    out = tmp_path / "out"
    code = main(["check-data", str(task), "--splits-only", "--json", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2
    assert (
        captured.err.count("\n") == 1 and "checks.leakage: dev record dev.jsonl:3" in captured.err
    )
    printed = json.loads(captured.out)
    assert printed["ok"] is False and len(printed["leakage"]) == 3
    assert json.loads((out / "datacheck.json").read_text()) == printed
    warned = planted_task(tmp_path / "w", checks="checks: {leakage: warn}\n")
    assert main(["check-data", str(warned), "--splits-only", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "warn" in text and "t7" in text and "leakage (3 records)" in text


def test_a_climb_on_leaking_data_stops_before_writing_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = planted_task(tmp_path / "t", models="['openai:never@http://127.0.0.1:9/v1']")
    out = tmp_path / "out"
    assert main(["climb", str(task), "--out", str(out), "--track", "none"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checks.leakage" in err and not out.exists()


def test_prompt_lengths_cuts_and_the_loss_mask_per_rung(
    tmp_path: Path, tiny_causal_lm: Path
) -> None:
    model = f"hf:{tiny_causal_lm}"  # 256 positions
    rungs = "  - zero_shot\n  - {rung: few_shot, k: 2}\n  - {rung: lora, max_seq_len: 120}\n"
    checks = "checks: {leakage: warn, truncation: error}\n"
    file = planted_task(
        tmp_path, checks=checks, rungs=rungs, models=f"['{model}']", words=4, long_words=120
    )
    task = load_task(file)
    report = run_data_checks(task, [model], ModelCache())
    rows = {r["rung"]: r for r in report.lengths}
    assert [r["context"] for r in rows.values()] == [256, 256, 256]
    zero, few, lora = rows["zero_shot"], rows["few_shot"], rows["lora"]
    # only the planted long test record is cut (the prompt keeps 256 - 4 tokens)
    assert (zero["test_cut"], zero["first_cut_test"], zero["test_records"]) == (1, "t20", 21)
    assert zero["prompt"] == few["prompt"] == lora["prompt"] == "exact"
    few_example = next(e for e in report.examples if e["rung"] == "few_shot")
    zero_example = next(e for e in report.examples if e["rung"] == "zero_shot")
    assert few_example["prompt_tokens"] > zero_example["prompt_tokens"]  # two examples in it
    # fine-tuning: only the planted long train record passes max_seq_len
    assert (lora["train_cut"], lora["first_cut_train"], lora["max_seq_len"]) == (
        1,
        "train.jsonl:41",
        120,
    )
    assert zero["max_seq_len"] is None and zero["train_records"] == 0
    # one record per rung as the model sees it, and (fine-tuning) as it is trained on
    example = next(e for e in report.examples if e["rung"] == "lora")
    first_test, first_train = task.test[0], task.train[0]
    # the chat template and the BOS the model reads (this tokenizer drops "<|" and newlines)
    assert first_test["input"] in example["seen"] and example["seen"].startswith("<s>user")
    trained = "".join(r["text"] for r in example["loss_mask"] if r["trained"])
    untrained = "".join(r["text"] for r in example["loss_mask"] if not r["trained"])
    assert trained.startswith(first_train["answer"]) and trained.endswith("</s>")
    assert first_train["input"] in untrained and first_train["answer"] not in untrained.split()
    assert [f.rule for f in report.errors] == ["truncation"] * 3
    with pytest.raises(ConfigError) as err:
        raise_on_errors(report)
    assert str(err.value).startswith(
        f"task.yaml: checks.truncation: test record t20 is cut on rung zero_shot with {model}: "
        "1 of 21 test records pass the model's context of 256 tokens less 4 for the answer"
    )


def test_a_climb_writes_its_data_check_beside_its_results(
    tmp_path: Path, tiny_causal_lm: Path
) -> None:
    model = f"hf:{tiny_causal_lm}"
    file = planted_task(tmp_path, checks="checks: {leakage: warn}\n", models=f"['{model}']")
    logged: list[str] = []
    result = climb(file, ClimbOptions(out=tmp_path / "out", optimise=False, log=logged.append))
    assert [r.rung for r in result.rows] == ["zero_shot"]
    saved = json.loads((tmp_path / "out" / "datacheck.json").read_text())
    assert saved["ok"] is True and len(saved["leakage"]) == 3
    assert saved["lengths"][0]["model"] == model and saved["examples"][0]["rung"] == "zero_shot"
    assert sum("data check (warning): task.yaml: checks.leakage" in line for line in logged) == 2
    page = (tmp_path / "out" / "report.html").read_text()  # and the report shows it
    assert "<h2>Data checks</h2>" in page and "warn: task.yaml: checks.leakage: dev record" in page
    assert "<details class='seen'><summary>zero_shot on " in page


@pytest.mark.parametrize("example", ["tagger", "riddles", "rag-qa", "offensive"])
def test_the_shipped_examples_pass_their_own_data_checks(example: str, tmp_path: Path) -> None:
    """No shipped example stops a climb (the demo's included), and none has a leaked or
    duplicate record under the default checks: tagger's and offensive's generators once
    wrote test inputs one name away from a train input."""
    import shutil

    root = Path(__file__).resolve().parents[1] / "examples" / example
    shutil.copytree(root, tmp_path / example, ignore=shutil.ignore_patterns("data"))
    task = load_task(tmp_path / example / "task.yaml")  # generate.py writes data/
    assert task.spec.checks == ChecksSpec()  # no rule relaxed in the task file
    report = run_data_checks(task, [])
    assert report.leakage == [] and report.duplicates == [] and report.findings == []


def test_split_guard_refuses_what_the_data_check_finds(tmp_path: Path) -> None:
    """A generator's SplitGuard, offered the planted records split by split, refuses just
    the planted leaks and the duplicate; what it admits passes the checks."""
    planted = load_task(planted_task(tmp_path / "planted"))
    guard, kept, refused = SplitGuard(), {}, set()
    for split in ("train", "dev", "test"):
        kept[split] = [r for r in getattr(planted, split) if guard.admit(split, r["input"])]
        refused |= {record_id(r) for r in getattr(planted, split) if r not in kept[split]}
    assert refused == {"train.jsonl:22", "dev.jsonl:3", "t3", "t7"}
    for split, records in kept.items():
        rows = [{k: r[k] for k in ("text", "label", "id") if k in r} for r in records]
        (tmp_path / "planted" / f"{split}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows)
        )
    report = run_data_checks(load_task(tmp_path / "planted" / "task.yaml"), [])
    assert report.leakage == [] and report.duplicates == [] and report.findings == []
    # a near pair within one split is no leak: the check compares splits
    text = planted.train[0]["input"]
    same_split = SplitGuard()
    assert same_split.admit("train", text) and same_split.admit("train", text + " more")
    assert not same_split.admit("test", text + " again")


def test_reference_shares_are_out_of_the_whole_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each listed reference's share is its count over the split's records: here the 20
    listed references cover 25 of 60 train records, and "none" is 6 of 60 (10%), not 6 of
    25 (24%); the 35 references the terminal's five leave out are counted, not dropped."""
    from ladder.climb.datacheck import commonest_shares
    from ladder.climb.report_datacheck import datacheck_section

    rng = random.Random(3)
    train = [{"text": _sentence(rng, 8), "label": "none"} for _ in range(6)]
    train += [{"text": _sentence(rng, 8), "label": f"tag{i:02d}"} for i in range(54)]
    test = [{"text": _sentence(rng, 8), "label": "none"} for _ in range(4)]
    for name, rows in (("train", train), ("test", test)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "task.yaml").write_text(
        "name: shares\n"
        "data: {train: train.jsonl, test: test.jsonl, input: text, reference: label}\n"
        "instruction: Tag it.\noutput: {type: text}\nmetric: exact\ngood_enough: 0.5\n"
        "models: []\nrungs:\n  - zero_shot\n"
    )
    report = run_data_checks(load_task(tmp_path / "task.yaml"), [])
    counts = report.labels["train"]
    assert len(counts) == 20 and sum(counts.values()) == 25  # the listed rows: a minority
    assert report.distinct_references == {"train": 55, "test": 1}
    line = commonest_shares(counts, report.splits["train"], report.distinct_references["train"])
    assert line == "none 10%, tag00 2%, tag01 2%, tag02 2%, tag03 2%, … and 50 more"
    assert commonest_shares(report.labels["test"], 4, 1) == "none 100%"
    monkeypatch.setenv("COLUMNS", "200")  # one row per split, not folded
    out = tmp_path / "out"
    assert (
        main(["check-data", str(tmp_path / "task.yaml"), "--splits-only", "--out", str(out)]) == 0
    )
    printed = " ".join(capsys.readouterr().out.split())  # the table's padding dropped
    assert f"train │ 55 │ {line} │" in printed
    assert json.loads((out / "datacheck.json").read_text())["distinct_references"]["train"] == 55
    html = "".join(datacheck_section(out))
    assert "<td>train</td><td>55</td><td>none 10%, tag00 2%" in html and "and 50 more" in html
