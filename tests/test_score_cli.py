"""``ladder score``: JSON output, table output, and one-line errors naming the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sacrebleu

from ladder.cli.main import main
from ladder.cli.score import ScoreConfig


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("TERM", "dumb")


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def text_pair(tmp_path: Path) -> tuple[Path, Path, list[str], list[str]]:
    refs = [f"the {c} cat sat on the {d} mat today" for c in "abcde" for d in "xyz"]
    preds = [r.replace("today", "now") if i % 3 else r for i, r in enumerate(refs)]
    return write(tmp_path / "p.txt", preds), write(tmp_path / "r.txt", refs), preds, refs


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1  # one JSON object on one line
    return dict(json.loads(out))


def test_json_output_has_the_keys_and_sacrebleus_value(
    text_pair: tuple[Path, Path, list[str], list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    p, r, preds, refs = text_pair
    out = run_json(["score", "bleu", "--predictions", str(p), "--references", str(r), "--json",
                    "--resamples", "100", "--seed", "4"], capsys)  # fmt: skip
    assert {"metric", "value", "ci_low", "ci_high", "signature", "n", "details"} <= set(out)
    assert out["metric"] == "bleu" and out["n"] == len(refs)
    assert out["value"] == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score)
    assert "bs:100|conf:0.95|seed:4" in str(out["signature"])


def test_jsonl_objects_lists_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path / "p.jsonl", [json.dumps({"answer": a}) for a in ["Paris", "the moon", ""]])
    r = write(
        tmp_path / "r.jsonl",
        [json.dumps({"answer": g}) for g in [["paris", "Paris, France"], ["Moon"], []]],
    )
    out = run_json(["score", "squad_em", "--predictions", str(p), "--references", str(r),
                    "--field", "answer", "--json", "--resamples", "0"], capsys)  # fmt: skip
    assert out["value"] == 1.0 and out["ci_low"] is None


def test_metric_options_and_table_output(
    text_pair: tuple[Path, Path, list[str], list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    p, r, _, _ = text_pair
    argv = ["score", "rougeL", "--predictions", str(p), "--references", str(r)]
    assert main([*argv, "--option", "use_stemmer=false", "--option", "tokenizer=unicode"]) == 0
    out = capsys.readouterr().out
    assert "rougeL" in out and "95% CI" in out and "stem:no|tok:unicode" in out


def test_help_comes_from_score_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["score", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for name in ScoreConfig.model_fields:
        description = ScoreConfig.model_fields[name].description
        assert description and " ".join(description.split()[:5]) in out


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def test_length_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path / "P.txt", [str(i) for i in range(10)])
    r = write(tmp_path / "R.txt", [str(i) for i in range(9)])
    err = _error(["score", "exact", "--predictions", str(p), "--references", str(r)], capsys)
    assert f"{p} has 10 items, {r} has 9" in err


def test_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path / "p.txt", ["a"])
    r = tmp_path / "r.txt"
    r.write_text("")
    err = _error(["score", "exact", "--predictions", str(p), "--references", str(r)], capsys)
    assert f"{r}: the file is empty" in err


def test_invalid_json_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = write(tmp_path / "P.jsonl", [json.dumps(f"x{i}") for i in range(8)])
    lines = [json.dumps(f"x{i}") for i in range(8)]
    lines[6] = '{"reference": "x6"'
    r = write(tmp_path / "R.jsonl", lines)
    err = _error(["score", "exact", "--predictions", str(p), "--references", str(r)], capsys)
    assert f"{r}:7: invalid JSON:" in err


def test_missing_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path / "p.jsonl", [json.dumps({"output": "x"})])
    err = _error(["score", "exact", "--predictions", str(p), "--references", str(p)], capsys)
    assert f"{p}:1:" in err and "--field" in err


def test_unknown_metric_lists_valid_ones(
    text_pair: tuple[Path, Path, list[str], list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    p, r, _, _ = text_pair
    err = _error(["score", "bleurt", "--predictions", str(p), "--references", str(r)], capsys)
    assert "unknown metric 'bleurt'" in err and "bleu, chrf" in err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = write(tmp_path / "r.txt", ["a"])
    missing = tmp_path / "nope.txt"
    err = _error(["score", "exact", "--predictions", str(missing), "--references", str(r)], capsys)
    assert f"{missing}: no such file" in err


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--resamples", "-1"], "--resamples"),
        (["--confidence", "1.5"], "--confidence"),
        (["--option", "nonsense"], "--option 'nonsense'"),
        (["--option", "colour=1"], "no option 'colour'"),
    ],
)
def test_bad_options(
    extra: list[str],
    needle: str,
    text_pair: tuple[Path, Path, list[str], list[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    p, r, _, _ = text_pair
    err = _error(
        ["score", "exact", "--predictions", str(p), "--references", str(r), *extra], capsys
    )
    assert needle in err


def test_reference_free_metric_scores_predictions_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = write(tmp_path / "p.txt", ["what a lovely day", "you are an idiot", "thanks a lot"])
    out = run_json(["score", "toxicity", "--predictions", str(p), "--json", "--resamples", "0"],
                   capsys)  # fmt: skip
    assert out["metric"] == "toxicity" and out["n"] == 3
    assert out["value"] == pytest.approx(1 / 3)


def test_metric_that_needs_references_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = write(tmp_path / "p.txt", ["a", "b"])
    err = _error(["score", "bleu", "--predictions", str(p)], capsys)
    assert "needs --references" in err


def test_score_is_logged_to_the_tracker(
    text_pair: tuple[Path, Path, list[str], list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv("LADDER_TRACKING_URI", f"jsonl:{events}")
    p, r, _, _ = text_pair
    out = run_json(["score", "chrf", "--predictions", str(p), "--references", str(r),
                    "--json", "--resamples", "50"], capsys)  # fmt: skip
    logged = [json.loads(line) for line in events.read_text().splitlines()]
    assert logged[0]["event"] == "run_start" and logged[-1]["event"] == "run_end"
    metrics = {k: v for e in logged if e["event"] == "metrics" for k, v in e["metrics"].items()}
    assert metrics["chrf"] == pytest.approx(out["value"])
    assert metrics["chrf.ci_low"] == pytest.approx(out["ci_low"])
    params = next(e["params"] for e in logged if e["event"] == "params")
    assert params["predictions"] == str(p)


def test_the_docs_squad_command_reads_each_file_at_its_own_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/evaluation.md: `--field answers` names the references' field, not the predictions'
    (whose objects are read at their own key, which may differ from line to line)."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "preds.jsonl", [json.dumps({"id": 1, "prediction": "Paris"}),
                                     json.dumps({"id": 2, "answer": "the moon"})])  # fmt: skip
    write(tmp_path / "dev.jsonl", [json.dumps({"id": 1, "answers": ["Paris", "paris"]}),
                                   json.dumps({"id": 2, "answers": ["Moon"]})])  # fmt: skip
    argv = "score squad_f1 --predictions preds.jsonl --references dev.jsonl --field answers --json"
    out = run_json([*argv.split(), "--resamples", "0"], capsys)
    assert out["value"] == 1.0 and out["n"] == 2


def test_a_missing_field_names_the_flag_that_sets_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = write(tmp_path / "p.jsonl", [json.dumps({"guess": "a"})])
    r = write(tmp_path / "r.jsonl", [json.dumps({"gold": "a"})])
    base = ["score", "exact", "--predictions", str(p), "--references", str(r)]
    err = _error(base, capsys)
    assert f"{p}:1:" in err and "pass --prediction-field NAME" in err and "guess" in err
    err = _error([*base, "--prediction-field", "guess"], capsys)
    assert f"{r}:1:" in err and "pass --field NAME" in err and "gold" in err
    err = _error([*base, "--prediction-field", "guess", "--field", "answers"], capsys)
    assert f"{r}:1: the object has no field 'answers'" in err and "pass --field NAME" in err
    out = run_json([*base, "--prediction-field", "guess", "--field", "gold", "--json",
                    "--resamples", "0"], capsys)  # fmt: skip
    assert out["value"] == 1.0


def test_score_tracks_by_default_like_climb(
    text_pair: tuple[Path, Path, list[str], list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No --track and no LADDER_TRACKING_URI: the run goes to ./ladder-runs.db, as a climb's
    would; --track none logs nothing."""
    p, r, _, _ = text_pair
    work = tmp_path / "project"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("LADDER_TRACKING_URI")
    argv = ["score", "chrf", "--predictions", str(p), "--references", str(r), "--resamples", "0"]
    assert main([*argv, "--track", "none"]) == 0
    assert "Run logged" not in capsys.readouterr().out and not list(work.iterdir())
    assert main(argv) == 0
    assert "Run logged to sqlite:///" in capsys.readouterr().out
    assert main(["runs", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["score chrf"] and "chrf" in rows[0]["metrics"]
