"""Real-size rehearsal: Qwen2.5-0.5B and Llama-3.2-1B shapes through inference, LoRA, QLoRA
and GGUF export, with measured peak memory against ``ladder fit``'s estimate.

How to run (from the repository root; about 35 minutes and up to 8 GB of RAM on 2 CPU
cores, ~9 GB of disk under the temp folder, freed at the end):

    .venv/bin/python bench/family_rehearsal.py                         # both, updates docs
    .venv/bin/python bench/family_rehearsal.py --models qwen2.5-0.5b --no-write
    .venv/bin/python bench/family_rehearsal.py --results r.json      # keep the raw figures
    .venv/bin/python bench/family_rehearsal.py --from-results r.json # redo the tables only

Each model is a random-weight checkpoint with the published shape (layers, widths, heads,
KV heads, vocabulary rows, tied embeddings, RoPE settings) saved in bf16 safetensors, with
a small tokenizer trained here in the family's style (tests/families.py) and the config's
full vocabulary: a padded vocabulary, as Qwen ships one. The models run one after the
other, never together, and every measurement runs in its own process so each peak is its
own: peak RSS (``ru_maxrss``) minus the RSS before the model loads (the Python, torch and
transformers runtime), as bench/finetune_memory.py does.

1. inference: ``load_model("hf:...", dtype=bf16|fp32)``, 16 greedy tokens for one prompt;
2. one LoRA and one QLoRA run of ``finetune()``: batch 1, 256 tokens, 2 steps;
3. ``ladder fit``'s estimate (:func:`ladder.models.memory.estimate_memory` on the folder)
   for the same four settings, and measured / estimate;
4. ``export_gguf`` to f16, llama.cpp's quantizer to Q4_K_M alone, and ``export_gguf`` to
   q4_k_m (which writes an f16 file, quantizes it and scores both on the built-in text).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from _docs import write_section

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

# Published configs (the models' config.json on the Hugging Face Hub).
MODELS: dict[str, dict[str, Any]] = {
    "qwen2.5-0.5b": {
        "model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
        "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
        "vocab_size": 151936, "max_position_embeddings": 32768, "tie_word_embeddings": True,
        "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
    },
    "llama-3.2-1b": {
        "model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192,
        "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
        "head_dim": 64, "vocab_size": 128256, "max_position_embeddings": 131072,
        "tie_word_embeddings": True, "rope_theta": 500000.0, "rms_norm_eps": 1e-5,
        "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "high_freq_factor": 4.0,
                         "low_freq_factor": 1.0, "original_max_position_embeddings": 8192},
    },
}  # fmt: skip
PROMPT = "the cat sat on the mat and then the dog"
NEW_TOKENS = 16
SEQ_LEN = 256
LORA_RANK = 8  # FinetuneConfig's default rank
MIB, GB = 2**20, 1e9


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def build(name: str, directory: Path) -> dict[str, Any]:
    """Save a random ``name`` checkpoint in bf16 with a family-style tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    from families import FAMILIES, build_tokenizer

    published = dict(MODELS[name])
    family = FAMILIES[published.pop("model_type")]
    tokenizer = build_tokenizer(family)
    eos = [tokenizer.convert_tokens_to_ids(t) for t in family.eos]
    bos = tokenizer.convert_tokens_to_ids(family.bos) if family.bos else None
    ids = {"bos_token_id": bos, "eos_token_id": eos, "pad_token_id": tokenizer.pad_token_id}
    config = AutoConfig.for_model(family.name, **published, **ids)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.generation_config = GenerationConfig(**ids)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    params = sum(p.numel() for p in model.parameters())
    return {"params": params, "tokens": len(tokenizer), "rows": config.vocab_size}


def infer(checkpoint: Path, dtype: str) -> dict[str, Any]:
    """Load through the ``hf:`` backend in ``dtype`` and generate 16 greedy tokens."""
    import ladder.models.hf  # noqa: F401  (torch and transformers: the runtime, in the baseline)
    from ladder.models import load_model
    from ladder.models.base import GenerationParams

    before = _maxrss()
    lm = load_model(f"hf:{checkpoint}", dtype=dtype, device="cpu")
    loaded = _maxrss()
    prompt_tokens = len(lm.tokenizer(PROMPT)["input_ids"])  # type: ignore[attr-defined]
    start = time.perf_counter()
    [done] = lm.generate([PROMPT], GenerationParams(max_tokens=NEW_TOKENS))
    seconds = time.perf_counter() - start
    return {"baseline": before, "loaded": loaded, "peak": _maxrss(), "seconds": seconds,
            "tokens": done.completion_tokens, "prompt_tokens": prompt_tokens}  # fmt: skip


def train(checkpoint: Path, method: str, data: Path, out: Path) -> dict[str, Any]:
    """Two steps of ``method`` at batch 1 x 256 tokens through ``finetune()``."""
    from ladder.train.finetune import finetune
    from ladder.train.finetune_config import FinetuneConfig

    before = _maxrss()
    cfg = FinetuneConfig(
        model=f"hf:{checkpoint}",
        data=str(data),
        method=method,
        out=str(out),
        max_seq_len=SEQ_LEN,
        packing=True,
        merge=False,
        train={"max_steps": 2, "batch_size": 1, "warmup_steps": 1, "eval_every": 10**6,
               "save_every": 10**6, "eval_batches": 1, "log_every": 1},
    )  # fmt: skip
    result = finetune(cfg, progress=False)
    step = SEQ_LEN / result.tokens_per_s if result.tokens_per_s else float("nan")
    return {"baseline": before, "peak": max(_maxrss(), result.peak_memory_bytes),
            "step_seconds": step}  # fmt: skip


def load(checkpoint: Path, method: str) -> dict[str, Any]:
    """Only load and prepare the model as ``method`` does: the peak of loading alone."""
    import ladder.train.finetune  # noqa: F401  (the runtime, in the baseline)
    from ladder.train.finetune_config import FinetuneConfig
    from ladder.train.methods import get_method

    before = _maxrss()
    chosen = get_method(method)
    model, _ = chosen.load(checkpoint)
    cfg = FinetuneConfig(model="hf:x", data="x", method=method, out="x")
    chosen.prepare(model, cfg, checkpoint)
    return {"baseline": before, "peak": _maxrss()}


def export(checkpoint: Path, out: Path) -> dict[str, Any]:
    """GGUF f16 export, llama.cpp's Q4_K_M quantizer alone, then the q4_k_m export."""
    from ladder.export import export_gguf
    from ladder.export.kquants import quantize_gguf

    start = time.perf_counter()
    f16 = export_gguf(f"hf:{checkpoint}", out / "f16", quant="f16")
    f16_seconds = time.perf_counter() - start
    start = time.perf_counter()
    quantize_gguf(f16.gguf, out / "alone-q4_k_m.gguf", "q4_k_m")
    quantize_seconds = time.perf_counter() - start
    start = time.perf_counter()
    q4 = export_gguf(f"hf:{checkpoint}", out / "q4", quant="q4_k_m")
    q4_seconds = time.perf_counter() - start
    assert q4.perplexity is not None
    return {"f16_seconds": f16_seconds, "f16_bytes": f16.bytes,
            "quantize_seconds": quantize_seconds, "q4_seconds": q4_seconds,
            "q4_bytes": q4.bytes, "perplexity": list(q4.perplexity), "peak": _maxrss()}  # fmt: skip


def _run(*args: str) -> dict[str, Any]:
    """One measurement in a fresh process: its last stdout line is the JSON result."""
    cmd = [sys.executable, __file__, "--worker", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def estimates(checkpoint: Path, prompt_tokens: int) -> dict[str, dict[str, int]]:
    """``ladder fit``'s totals (bytes) for the settings measured, as ladder runs them on a
    CPU: the hf: backend in the dtype asked, LoRA on an fp32 base (load_base), QLoRA on NF4
    with PEFT's default targets (LoRA: q and v, counted as attention; QLoRA: all-linear)."""
    from ladder.models.architectures import resolve_model
    from ladder.models.memory import FitConfig, estimate_memory

    shape = resolve_model(str(checkpoint))
    context = prompt_tokens + NEW_TOKENS
    settings = {
        "inference bf16": FitConfig(method="inference", dtype="bf16", context=context),
        "inference fp32": FitConfig(method="inference", dtype="fp32", context=context),
        "lora": FitConfig(method="lora", dtype="fp32", context=SEQ_LEN,
                          lora_rank=LORA_RANK, lora_targets="attention"),
        "qlora": FitConfig(method="qlora", context=SEQ_LEN, lora_rank=LORA_RANK),
    }  # fmt: skip
    found = {key: estimate_memory(shape, cfg) for key, cfg in settings.items()}
    return {
        key: {"total": e.total_bytes, **{c.name: c.bytes for c in e.components}}
        for key, e in found.items()
    }


def rehearse(name: str) -> dict[str, Any]:
    """Build ``name``, measure every setting one process at a time, then delete it all."""
    from families import sentences

    with tempfile.TemporaryDirectory(prefix="rehearsal-") as tmp:
        root = Path(tmp)
        checkpoint = root / name
        row: dict[str, Any] = {"model": name, **_run("build", name, str(checkpoint))}
        data = root / "text.jsonl"
        data.write_text("".join(json.dumps({"text": s}) + "\n" for s in sentences(3000)))
        for dtype in ("bf16", "fp32"):
            row[f"inference {dtype}"] = _run("infer", str(checkpoint), dtype)
            print(name, dtype, row[f"inference {dtype}"], flush=True)
        for method in ("lora", "qlora"):
            row[method] = _run("train", str(checkpoint), method, str(data), str(root / method))
            row[method]["loaded"] = _run("load", str(checkpoint), method)["peak"]
            print(name, method, row[method], flush=True)
        row["export"] = _run("export", str(checkpoint), str(root / "gguf"))
        print(name, "export", row["export"], flush=True)
        prompt_tokens = row["inference bf16"]["prompt_tokens"]
        row["estimates"] = estimates(checkpoint, prompt_tokens)
    print(json.dumps(row), flush=True)
    return row


def with_cpu_terms(row: dict[str, Any], key: str) -> int:
    """``ladder fit``'s total plus what it leaves out on a CPU, the larger of two phases.

    Running: the measured runtime instead of the flat 1 GB CUDA overhead, and for QLoRA
    activations in fp32 (its compute dtype on a CPU; fit counts them in 16 bits). Loading:
    a load that converts the bf16 file to fp32 (fp32 inference, LoRA) holds the fp32 copy
    and the mapped file at once; QLoRA's load holds the fp32 weights before quantising.
    """
    from ladder.models.memory import OVERHEAD_BYTES

    estimate, baseline, params = row["estimates"][key], row[key]["baseline"], row["params"]
    running = estimate["total"] - OVERHEAD_BYTES + baseline
    loading = 0
    if key == "qlora":
        running += estimate["activations"]
        loading = baseline + 4 * params
    elif key in ("inference fp32", "lora"):
        loading = baseline + (4 + 2) * params
    return max(running, loading)


def memory_table(rows: list[dict[str, Any]]) -> list[str]:
    """Measured peaks against the estimates, one line per model and setting."""
    lines = [
        "| model | setting | baseline MiB | load peak MiB | peak MiB | `ladder fit` MiB "
        "| fit + CPU terms MiB | peak / fit | peak / (fit + CPU terms) | speed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        for key in ("inference bf16", "inference fp32", "lora", "qlora"):
            r, fit, cpu = row[key], row["estimates"][key]["total"], with_cpu_terms(row, key)
            if key.startswith("inference"):
                speed = f"{r['tokens'] / r['seconds']:.1f} tok/s"
            else:
                speed = f"{r['step_seconds']:.1f} s/step"
            lines.append(
                f"| {row['model']} | {key} | {r['baseline'] / MIB:.0f} | {r['loaded'] / MIB:.0f} "
                f"| {r['peak'] / MIB:.0f} | {fit / MIB:.0f} | {cpu / MIB:.0f} "
                f"| {r['peak'] / fit:.2f} | {r['peak'] / cpu:.2f} | {speed} |"
            )
    return lines


def verdict(rows: list[dict[str, Any]]) -> str:
    """How many settings land within ±15%, and the spread of measured / estimate."""
    keys = ("inference bf16", "inference fp32", "lora", "qlora")
    plain = sorted(row[k]["peak"] / row["estimates"][k]["total"] for row in rows for k in keys)
    cpu = sorted(row[k]["peak"] / with_cpu_terms(row, k) for row in rows for k in keys)
    within = [sum(abs(x - 1) <= 0.15 for x in xs) for xs in (plain, cpu)]
    return (
        f"Within ±15% of `ladder fit`: {within[0]} of {len(plain)} settings; measured / fit "
        f"low {plain[0]:.2f}, median {plain[len(plain) // 2]:.2f}, high {plain[-1]:.2f}. "
        f"With the CPU terms added: {within[1]} of {len(cpu)}; low {cpu[0]:.2f}, median "
        f"{cpu[len(cpu) // 2]:.2f}, high {cpu[-1]:.2f}."
    )


def export_table(rows: list[dict[str, Any]]) -> list[str]:
    """Export and quantize times, sizes and the perplexity pair."""
    lines = [
        "| model | params | f16 export s | f16 MiB | Q4_K_M quantize s | q4_k_m export s "
        "| Q4_K_M MiB | perplexity f16 → Q4_K_M | export peak MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        e = row["export"]
        f16_ppl, q4_ppl = e["perplexity"]
        lines.append(
            f"| {row['model']} | {row['params']:,} | {e['f16_seconds']:.0f} "
            f"| {e['f16_bytes'] / MIB:.0f} | {e['quantize_seconds']:.0f} | {e['q4_seconds']:.0f} "
            f"| {e['q4_bytes'] / MIB:.0f} | {f16_ppl:.1f} → {q4_ppl:.1f} | {e['peak'] / MIB:.0f} |"
        )
    return lines


def worker(args: list[str]) -> dict[str, Any]:
    """Run one measurement named by ``args[0]`` in this process."""
    kind, first, *rest = args
    if kind == "build":
        return build(first, Path(rest[0]))
    if kind == "train":
        return train(Path(first), rest[0], Path(rest[1]), Path(rest[2]))
    jobs = {"infer": infer, "load": load, "export": lambda c, o: export(c, Path(o))}
    return jobs[kind](Path(first), *rest)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--no-write", action="store_true", help="do not update docs")
    parser.add_argument("--results", type=Path, help="also save the raw results (JSON) here")
    parser.add_argument("--from-results", type=Path, help="render saved results, no runs")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return
    if args.from_results:
        rows = json.loads(args.from_results.read_text())
    else:
        rows = [rehearse(name) for name in args.models]
    if args.results:
        args.results.write_text(json.dumps(rows, indent=1))
    memory, exports, summary = memory_table(rows), export_table(rows), verdict(rows)
    print("\n".join([*memory, "", summary, "", *exports]))
    if not args.no_write:
        body = _body(memory, exports, summary)
        print(f"updated {write_section('family_rehearsal.py', body)}")


def _machine() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {ram:.0f} GiB RAM, no GPU"


def _body(memory: list[str], exports: list[str], summary: str) -> str:
    return "\n".join(
        [
            "## Real-size rehearsal: Qwen2.5-0.5B and Llama-3.2-1B shapes",
            "",
            f"Command: `python bench/family_rehearsal.py` ({date.today().isoformat()}). "
            f"Machine: {_machine()}; Python {platform.python_version()}.",
            "Random weights in the published shapes (bf16 safetensors; a padded vocabulary: "
            "the config's full row count over a small family-style tokenizer). Each setting "
            "runs in its own process; peak = process RSS, baseline = RSS before the model "
            "loads (the runtime), load peak = after loading (LoRA/QLoRA: a process that only "
            f"loads and prepares the model). Inference: `hf:` backend, {NEW_TOKENS} greedy "
            f"tokens after a short prompt. LoRA / QLoRA: `finetune()`, batch 1 × {SEQ_LEN} "
            f"tokens, 2 steps, rank {LORA_RANK}; an fp32 base / an NF4 base computing in "
            "fp32 (CPU). `ladder fit` = `estimate_memory` on the same folder and settings.",
            "",
            *memory,
            "",
            summary,
            "",
            "`ladder fit` is a GPU estimate (a flat 1 GB for the CUDA context); on a CPU it "
            'leaves out (the "fit + CPU terms" column adds them): the runtime, about 0.25 GB, '
            "in place of that 1 GB, so bf16 inference measures below it; a load that converts "
            "the bf16 file to fp32 holds the mapped file beside the fp32 copy (+2 B/param: "
            "1.0 GB for Qwen, 2.5 GB for Llama), the peak of fp32 inference and of Llama's "
            "LoRA run; QLoRA computes in fp32 on a CPU (twice the 16-bit activations fit "
            "counts) and loads through fp32 weights. What is left: about 0.25 GB in the first "
            "bf16 forward; Qwen's LoRA step, about 0.8 GB above what fit counts for it (its "
            "151,936-row vocabulary makes each fp32 copy of the logits 156 MB); and Qwen's "
            "QLoRA, where after loading (measured apart) the process holds about 1 GB more than "
            "the NF4 weights and fp32 embeddings, its load going through fp32 weights, and "
            "the peak varied between 3.5 and 4.3 GiB from run to run. These are CPU effects "
            "(on a GPU the file stays in host memory and QLoRA computes in bf16), so "
            "`models/memory.py` is unchanged; the line above the paragraph gives the low / "
            "median / high of measured / fit for a CPU run.",
            "",
            *exports,
            "",
            "Export: `export_gguf` to f16, llama.cpp's quantizer alone (f16 → Q4_K_M), and "
            '`export_gguf(quant="q4_k_m")`, which writes the f16 file again, quantizes it '
            "and scores both on the built-in text with one llama.cpp thread (most of its "
            "time). Random weights give perplexities near the vocabulary size: the pair shows "
            "the path works and the relative change, not model quality. Timings are noisy: "
            "other engineers ran tests on the same 2-core machine during the run; memory "
            "figures are not affected by that.",
        ]
    )


if __name__ == "__main__":
    main()
