"""GGUF export for every family of tests/families.py: one row each, one parametrised suite.

For each family the exported f32 file reads back with the family's architecture, its
padded vocabulary, special ids and template; llama.cpp (llama-cpp-python, installed by
``make test``) tokenizes every prompt like the Hugging Face tokenizer and decodes the same
greedy ids; and the Ollama Modelfile's Go template, evaluated with Go's template rules,
renders a conversation exactly as the Hugging Face chat template does.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from families import FAMILIES, build_family
from ladder.errors import UnsupportedError
from ladder.export import export_gguf, family_names

ARCH = {
    "llama": "llama",
    "mistral": "llama",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
    "gemma3_text": "gemma3",
    "phi3": "phi3",
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_family(request.param, tmp_path_factory.mktemp(request.param) / "model")


def _fields(path: Path) -> tuple[dict[str, Any], dict[str, list[int]]]:
    import gguf

    reader = gguf.GGUFReader(str(path))
    fields = {name: field.contents() for name, field in reader.fields.items()}
    shapes = {t.name: [int(x) for x in t.shape] for t in reader.tensors}
    return fields, shapes


def test_every_family_row_exports_and_every_exportable_family_has_a_row() -> None:
    assert sorted(family_names()) == sorted(FAMILIES)


def test_the_file_carries_the_familys_architecture_vocabulary_and_specials(
    family: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    config = json.loads((family / "config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(family)
    fields, shapes = _fields(export_gguf(f"hf:{family}", tmp_path, quant="f32").gguf)
    arch = fields["general.architecture"]
    assert arch == ARCH[config["model_type"]]
    # The token list is as long as the embedding matrix, padded vocabularies included.
    rows = config["vocab_size"]
    assert len(fields["tokenizer.ggml.tokens"]) == rows
    assert shapes["token_embd.weight"] == [config["hidden_size"], rows]
    if rows > len(tokenizer):
        assert fields["tokenizer.ggml.tokens"][-1] == f"[PAD{rows - 1}]"
    eos = (
        config["eos_token_id"]
        if isinstance(config["eos_token_id"], list)
        else [config["eos_token_id"]]
    )
    declared = {fields["tokenizer.ggml.eos_token_id"], fields.get("tokenizer.ggml.eot_token_id")}
    assert set(eos) <= declared
    adds_bos = tokenizer("the cat")["input_ids"][0] == tokenizer.bos_token_id
    assert fields["tokenizer.ggml.add_bos_token"] is adds_bos
    assert fields["tokenizer.chat_template"] == tokenizer.chat_template
    spm = FAMILIES[config["model_type"]].style == "spm"
    assert fields["tokenizer.ggml.model"] == ("llama" if spm else "gpt2")
    if config.get("head_dim"):
        assert fields[f"{arch}.attention.key_length"] == config["head_dim"]
    if config.get("sliding_window") and config.get("use_sliding_window", True):
        assert fields[f"{arch}.attention.sliding_window"] == config["sliding_window"]


def test_llama_cpp_decodes_the_same_greedy_ids(family: Path, tmp_path: Path) -> None:
    from gguf_llamacpp import compare

    result = compare(family, "f32", tmp_path / "f32")
    assert result.tokenization_equal == result.prompts
    assert result.identical == result.prompts, result.first_mismatch
    assert result.tokens >= result.prompts
    assert result.max_logit_diff < 0.01


def test_gemma3_sliding_layers_match_llama_cpp_past_the_window(tmp_path: Path) -> None:
    """Five sliding-window layers (RoPE base 10,000) and one global one (1,000,000), as
    Gemma 3 interleaves them, with a window of 8 tokens that the prompts outrun: llama.cpp
    decodes the same ids (and the window changes HF's logits, so it is in play)."""
    import torch
    from transformers import AutoModelForCausalLM

    from gguf_llamacpp import compare

    checkpoint = build_family(
        "gemma3_text", tmp_path / "model", sliding_window=8, num_hidden_layers=6
    )
    ids = torch.tensor([list(range(5, 40))])
    windowed = AutoModelForCausalLM.from_pretrained(checkpoint)
    wide = AutoModelForCausalLM.from_pretrained(checkpoint, sliding_window=512)
    assert (windowed(ids).logits - wide(ids).logits).abs().max() > 0.1
    result = compare(checkpoint, "f32", tmp_path / "f32")
    assert result.tokenization_equal == result.prompts
    assert result.identical == result.prompts, result.first_mismatch


CONVERSATION = [
    {"role": "system", "content": "You answer briefly."},
    {"role": "user", "content": "Who sat on the mat?"},
    {"role": "assistant", "content": "The cat."},
    {"role": "user", "content": "And then?"},
]


def test_the_modelfile_template_renders_like_the_chat_template(
    family: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(family)
    result = export_gguf(f"hf:{family}", tmp_path, quant="f32")
    text = result.modelfile.read_text()
    template = re.search(r'TEMPLATE """(.*?)"""', text, re.S)
    assert template is not None, text
    messages = CONVERSATION
    if "system" not in template.group(1):
        messages = CONVERSATION[1:]
    expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    fields, _ = _fields(result.gguf)
    if fields["tokenizer.ggml.add_bos_token"] and expected.startswith(tokenizer.bos_token):
        expected = expected[len(tokenizer.bos_token) :]  # llama.cpp adds BOS itself
    assert go_render(template.group(1), messages) == expected
    eos = json.loads((family / "config.json").read_text())["eos_token_id"]
    for token in eos if isinstance(eos, list) else [eos]:
        assert f'PARAMETER stop "{tokenizer.convert_ids_to_tokens(token)}"' in text


def test_q8_0_is_byte_for_byte_what_llama_cpps_quantizer_makes(tmp_path: Path) -> None:
    import ctypes

    import gguf
    import llama_cpp
    import numpy as np

    checkpoint = build_family("llama", tmp_path / "model")
    f32 = export_gguf(f"hf:{checkpoint}", tmp_path / "f32", quant="f32").gguf
    ours = export_gguf(f"hf:{checkpoint}", tmp_path / "q8", quant="q8_0").gguf
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    theirs = tmp_path / "theirs.gguf"
    assert (
        llama_cpp.llama_model_quantize(
            str(f32).encode(), str(theirs).encode(), ctypes.byref(params)
        )
        == 0
    )
    mine = {t.name: t for t in gguf.GGUFReader(str(ours)).tensors}
    for tensor in gguf.GGUFReader(str(theirs)).tensors:
        assert mine[tensor.name].tensor_type == tensor.tensor_type, tensor.name
        assert np.array_equal(
            np.asarray(mine[tensor.name].data).view(np.uint8),
            np.asarray(tensor.data).view(np.uint8),
        ), tensor.name


def test_k_quants_come_from_llama_cpp_with_their_perplexity_cost(tmp_path: Path) -> None:
    """Rows of 256 (K-quant blocks): a Q4_K_M file holds Q4_K tensors, and the export
    reports perplexity under the f16 file and the quant, both run by llama.cpp."""
    import gguf

    wide = build_family("qwen2", tmp_path / "model", hidden_size=256, intermediate_size=512)
    result = export_gguf(f"hf:{wide}", tmp_path / "out", quant="q4_k_m", check_text=TEXT)
    reader = gguf.GGUFReader(str(result.gguf))
    kinds = {t.tensor_type for t in reader.tensors}
    assert gguf.GGMLQuantizationType.Q4_K in kinds
    assert reader.fields["general.file_type"].contents() == 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "Modelfile",
        "model-q4_k_m.gguf",
    ]
    assert result.perplexity is not None
    base, quantized = result.perplexity
    assert base > 1 and 0.8 < quantized / base < 1.5
    f16 = export_gguf(f"hf:{wide}", tmp_path / "f16", quant="f16")
    assert result.bytes < 0.5 * f16.bytes


TEXT = "the cat sat on the mat and then the dog ran under the big tree. " * 8


def test_a_model_type_without_a_row_is_one_line(tiny_gpt2: Path, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedError, match=r"model_type 'gpt2' .*supported: gemma3_text"):
        export_gguf(f"hf:{tiny_gpt2}", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_tokenizer_it_cannot_convert_says_which(tiny_causal_lm: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(tiny_causal_lm, tmp_path / "model"))
    spec = json.loads((copy / "tokenizer.json").read_text())
    spec["model"]["type"] = "WordPiece"
    (copy / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(UnsupportedError, match="a WordPiece tokenizer cannot be exported"):
        export_gguf(f"hf:{copy}", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# A small evaluator of Go's text/template, enough for the Modelfiles ladder writes: literal
# text, {{ .Content }}, {{ range .Messages }}, {{ if eq .Role "x" }} / else if / else / end,
# string literals, and "{{-" / "-}}" whitespace trimming, with Go's rules for each.
_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


def go_render(template: str, messages: list[dict[str, str]]) -> str:
    pieces: list[tuple[str, str]] = []
    last = 0
    for match in _ACTION.finditer(template):
        text = template[last : match.start()]
        if match.group(1):
            text = text.rstrip()
        if pieces and pieces[-1][0] == "trim-next":
            pieces.pop()
            text = text.lstrip()
        pieces.append(("text", text))
        pieces.append(("action", match.group(2)))
        if match.group(3):
            pieces.append(("trim-next", ""))
        last = match.end()
    tail = template[last:]
    if pieces and pieces[-1][0] == "trim-next":
        pieces.pop()
        tail = tail.lstrip()
    pieces.append(("text", tail))
    tree, rest = _parse(pieces, 0)
    assert rest == len(pieces), "unbalanced template"
    return _run(tree, {"Messages": messages})


def _parse(pieces: list[tuple[str, str]], i: int) -> tuple[list[Any], int]:
    nodes: list[Any] = []
    while i < len(pieces):
        kind, body = pieces[i]
        if kind == "text":
            nodes.append(("text", body))
            i += 1
        elif body == "end" or body == "else" or body.startswith("else if "):
            return nodes, i
        elif body.startswith("range "):
            inner, i = _parse(pieces, i + 1)
            assert pieces[i][1] == "end"
            nodes.append(("range", body[len("range ") :].strip(), inner))
            i += 1
        elif body.startswith("if "):
            branches = []
            condition: str | None = body[len("if ") :]
            i += 1
            while True:
                inner, i = _parse(pieces, i)
                branches.append((condition, inner))
                word = pieces[i][1]
                i += 1
                if word == "end":
                    break
                condition = word[len("else if ") :] if word.startswith("else if ") else None
            nodes.append(("if", branches))
        else:
            nodes.append(("value", body))
            i += 1
    return nodes, i


def _value(expression: str, scope: dict[str, Any]) -> Any:
    if expression.startswith('"'):
        return json.loads(expression)
    if expression.startswith("eq "):
        left, right = re.findall(r'"[^"]*"|\.\w+', expression[3:])
        return _value(left, scope) == _value(right, scope)
    assert expression.startswith("."), expression
    return scope[expression[1:]]


def _run(nodes: list[Any], scope: dict[str, Any]) -> str:
    out = []
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "value":
            out.append(str(_value(node[1], scope)))
        elif node[0] == "range":
            for item in _value(node[1], scope):
                out.append(_run(node[2], {**scope, **{k.capitalize(): v for k, v in item.items()}}))
        else:
            for condition, inner in node[1]:
                if condition is None or _value(condition, scope):
                    out.append(_run(inner, scope))
                    break
    return "".join(out)


def test_the_go_evaluator_follows_gos_rules() -> None:
    """The evaluator itself: trimming, branches and ranges as Go's text/template has them."""
    template = (
        'A {{- range .Messages }}[{{ if eq .Role "user" }}U:{{ .Content }}{{ else }}O{{ end }}]'
        "{{ end -}}  B"
    )
    messages = [{"role": "user", "content": "hi"}, {"role": "bot", "content": "x"}]
    assert go_render(template, messages) == "A[U:hi][O]B"
