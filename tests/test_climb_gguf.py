"""Train→serve parity: the recommended rung's checkpoint exported to GGUF and scored through
llama.cpp (the ``gguf`` variants), and ``ladder export --check TASK``.

The fine-tuned climb is the one of tests/test_climb_finetune.py (30 steps of full
fine-tuning on the tiny Llama, 25 of 30 test records right); its gguf variants export the
tuned checkpoint and answer the same 30 records through the ``gguf:`` backend. The tiny
model's rows are 64 wide, so llama.cpp makes its q4_k_m from fallback types: the variant
still runs and is scored. An f32 export decodes what hf: decodes, so a prompting winner's
f32 variant and ``export --check`` on f32 give the very same answers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import write_climb_task
from ladder.cli.main import main
from ladder.climb import ClimbOptions, ClimbResult, climb

FULL = (
    "{rung: full, train: {max_steps: 30, batch_size: 8, lr: 0.003, warmup_steps: 2, "
    "eval_every: 10, save_every: 30}}"
)


def prompting_task(folder: Path, model: str, optimise: str) -> Path:
    """A zero_shot climb that recommends zero_shot (good_enough 0) on 12 test records."""
    task = write_climb_task(folder, [model], "  - zero_shot\n", extra=optimise, test=12)
    task.write_text(task.read_text().replace("good_enough: 0.8", "good_enough: 0.0"))
    return task


def outputs(folder: str | Path) -> list[str]:
    lines = (Path(folder) / "predictions.jsonl").read_text().splitlines()
    return [json.loads(line)["output"] for line in lines]


@pytest.fixture(scope="module")
def tuned(
    tiny_causal_lm: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ClimbResult, Path, list[str]]:
    root = tmp_path_factory.mktemp("climb-gguf")
    extra = "optimise: [quantise, {gguf: [q8_0, q4_k_m]}]\ncompute_hour_usd: 1.0\n"
    rungs = f"  - zero_shot\n  - {FULL}\n"
    task = write_climb_task(root / "task", [f"hf:{tiny_causal_lm}"], rungs, extra=extra)
    lines: list[str] = []
    result = climb(task, ClimbOptions(out=root / "out", all_rungs=True, log=lines.append))
    return result, task, lines


def test_gguf_variants_of_the_fine_tuned_checkpoint(
    tuned: tuple[ClimbResult, Path, list[str]],
) -> None:
    result, _, _ = tuned
    full = result.rows[1]
    assert result.recommendation is full and full.score.value == pytest.approx(25 / 30)
    int8, q8, q4 = result.variants
    assert [v.name for v in result.variants] == ["dynamic int8", "gguf q8_0", "gguf q4_k_m"]
    for variant in (q8, q4):
        assert variant.kind == "gguf" and variant.status == "done"
        assert variant.verdict in ("keeps quality", "drops quality")
        assert variant.difference is not None and variant.score.n == 30
        # answered from its own export of the tuned checkpoint, through llama.cpp
        file = Path(variant.weights.path)
        assert file.parent == Path(variant.provenance.folder) / "gguf"
        assert file.name.endswith(variant.name.split()[1] + ".gguf")
        assert variant.weights.bytes == file.stat().st_size > 0
        assert variant.model == f"{full.answered_by}#gguf-{variant.name.split()[1]}"
        assert variant.timing.tokens_per_s is not None and variant.timing.tokens_per_s > 0
        # the climb charged it the training behind the checkpoint, like the int8 variant
        assert variant.cost.compute_seconds > full.training.seconds > 0
    assert q8.weights.bytes < 1.5 * q4.weights.bytes  # neither is the f16 intermediate
    assert q8.score.value == pytest.approx(25 / 30)  # measured: the same 25 right as hf:
    assert q8.verdict == "keeps quality"
    assert int8.weights.path == "" and int8.timing.tokens_per_s is not None


def test_climb_json_and_report_show_the_gguf_variants(
    tuned: tuple[ClimbResult, Path, list[str]],
) -> None:
    result, _, _ = tuned
    state = json.loads((result.out / "climb.json").read_text())
    saved = {v["name"]: v for v in state["variants"]}
    q8 = saved["gguf q8_0"]
    assert q8["verdict"] == "keeps quality" and q8["kind"] == "gguf"
    assert q8["weights_bytes"] > 0 and q8["weights_file"].endswith("q8_0.gguf")
    assert q8["tokens_per_s"] > 0 and q8["delta_ci_low"] <= 0.0 <= q8["delta_ci_high"]
    assert result.report is not None
    page = result.report.read_text()
    file_cell = f"<td class='file' title='{q8['weights_file']}'>"
    for cell in ("gguf q8_0", "gguf q4_k_m", "tokens/s", "keeps quality", file_cell):
        assert cell in page


def test_resume_keeps_the_finished_gguf_variants(
    tuned: tuple[ClimbResult, Path, list[str]],
) -> None:
    result, task, _ = tuned
    files = {v.name: Path(v.weights.path).stat().st_mtime_ns for v in result.variants[1:]}
    lines: list[str] = []
    again = climb(task, ClimbOptions(out=result.out, all_rungs=True, resume=True, log=lines.append))
    assert "variant gguf q8_0: finished before, kept" in lines
    assert "variant gguf q4_k_m: finished before, kept" in lines
    assert not any("exporting" in line for line in lines)
    assert [v.to_record() for v in again.variants] == [v.to_record() for v in result.variants]
    assert {v.name: Path(v.weights.path).stat().st_mtime_ns for v in again.variants[1:]} == files


def test_an_f32_variant_answers_exactly_as_the_prompting_winner(
    tiny_causal_lm: Path, tmp_path: Path
) -> None:
    task = prompting_task(tmp_path / "t", f"hf:{tiny_causal_lm}", "optimise: [{gguf: [f32]}]\n")
    result = climb(task, ClimbOptions(out=tmp_path / "out"))
    [variant] = result.variants
    assert variant.name == "gguf f32" and variant.status == "done"
    winner = result.rows[0]
    assert outputs(variant.provenance.folder) == outputs(winner.provenance.folder)
    assert variant.verdict == "keeps quality" and variant.difference is not None
    assert variant.difference.delta == 0.0


def test_without_llama_cpp_the_gguf_variants_are_one_skipped_line(
    tiny_causal_lm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if it were not installed
    task = prompting_task(tmp_path / "t", f"hf:{tiny_causal_lm}", "optimise: [gguf]\n")
    lines: list[str] = []
    result = climb(task, ClimbOptions(out=tmp_path / "out", log=lines.append))
    [variant] = result.variants
    assert (variant.name, variant.status, variant.verdict) == ("gguf", "skipped", "skipped")
    assert variant.reason.startswith("llama-cpp-python is not installed")
    notices = [line for line in lines if "gguf" in line]
    assert notices == [f"variant gguf: skipped: {variant.reason}"]
    assert not (tmp_path / "out" / "variants").exists()


def test_a_family_the_export_does_not_know_is_skipped_with_why(
    tiny_gpt2: Path, tmp_path: Path
) -> None:
    task = prompting_task(tmp_path / "t", f"hf:{tiny_gpt2}", "optimise: [gguf]\n")
    [variant] = climb(task, ClimbOptions(out=tmp_path / "out")).variants
    assert variant.status == "skipped"
    assert "model_type 'gpt2' cannot be exported to GGUF" in variant.reason


def test_a_bad_gguf_quant_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = prompting_task(tmp_path / "t", "hf:/nowhere", "optimise: [quantise, {gguf: [q9]}]\n")
    assert main(["climb", str(task), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"ladder: error: {task}:8: field 'optimise': gguf quant 'q9' is not one of f32, f16, "
        "q8_0, q4_k_m, q5_k_m, q6_k"
    )
    assert not (tmp_path / "out").exists()


def test_a_gguf_model_runs_on_your_own_hardware_at_no_token_price() -> None:
    """Every gguf variant asks the price table: a local file is priced, not warned about."""
    from ladder.cost import DEFAULT_PRICES, Price, PriceTable
    from ladder.models.base import ModelInfo

    table = PriceTable(list(DEFAULT_PRICES.items()))
    assert table.price_for(ModelInfo(name="model-q8_0", backend="gguf")) == Price()


def test_export_check_scores_the_file_and_the_checkpoint(
    tiny_causal_lm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # good_enough 0.8, which the random model misses: --check judges parity only
    task = write_climb_task(tmp_path / "t", ["builtin:unused"], "  - zero_shot\n", test=12)
    out = tmp_path / "export"
    args = ["export", f"hf:{tiny_causal_lm}", "--quant", "f32", "--out", str(out)]
    assert main([*args, "--check", str(task)]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert "check: 12 test records, zero-shot, accuracy with its CI" in lines
    source = next(line for line in lines if line.startswith(f"  hf:{tiny_causal_lm}: "))
    exported = next(line for line in lines if line.startswith("  gguf:"))
    assert "tokens/s" in source and "tokens/s" in exported
    assert source.split(": ")[1].split(",")[0] == exported.split(": ")[1].split(",")[0]
    verdict = next(line for line in lines if line.startswith("gguf vs checkpoint: "))
    assert "keeps quality" in verdict and "difference +0.000" in verdict
    check = out / "check-animals"
    assert outputs(check / "source") == outputs(check / "gguf")  # f32: the same answers


def test_export_check_with_a_bad_task_writes_nothing(
    tiny_causal_lm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export"
    missing = tmp_path / "nope.yaml"
    args = ["export", f"hf:{tiny_causal_lm}", "--out", str(out), "--check", str(missing)]
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == f"ladder: error: {missing}: no such file"
    assert not out.exists()
    task = prompting_task(tmp_path / "t", "builtin:unused", "")
    bare = ["export", str(tiny_causal_lm), "--out", str(out), "--check", str(task)]
    assert main(bare) == 2  # a folder exports, but --check needs a spec it can load
    assert "unknown model spec" in capsys.readouterr().err
    assert not out.exists()
