"""Fine-tuning data: reading, format detection, validation errors, rendering and masking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ladder.data.formats import (
    IGNORE_INDEX,
    Encoded,
    detect_format,
    encode_chat,
    encode_examples,
    encode_pair,
    pack,
    parse_records,
    split_validation,
)
from ladder.data.io import read_records
from ladder.errors import ConfigError
from ladder.train.batches import TrainBatches, collate
from ladder.train.loss import next_token_loss


@pytest.fixture(scope="module")
def tokenizer(tiny_causal_lm: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_causal_lm)


def _jsonl(tmp_path: Path, rows: list, name: str = "d.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    ("row", "fmt"),
    [
        ({"instruction": "a", "input": "", "output": "b"}, "alpaca"),
        ({"instruction": "a", "context": "", "response": "b", "category": "qa"}, "dolly"),
        ({"messages": [{"role": "user", "content": "a"}]}, "chat"),
        ({"conversations": [{"from": "human", "value": "a"}]}, "chat"),
        ({"text": "a b c"}, "text"),
        ({"prompt": "a", "chosen": "b", "rejected": "c"}, "preference"),
    ],
)
def test_detect_format(tmp_path: Path, row: dict, fmt: str) -> None:
    assert detect_format(read_records(_jsonl(tmp_path, [row]))) == fmt


def test_every_format_becomes_messages_or_text(tmp_path: Path) -> None:
    alpaca = parse_records(
        read_records(_jsonl(tmp_path, [{"instruction": "i", "input": "x", "output": "o"}])),
        "alpaca",
    )[0]
    assert alpaca.messages == [
        {"role": "user", "content": "i\n\nx"},
        {"role": "assistant", "content": "o"},
    ]
    share = {"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "h"},
                               {"from": "gpt", "value": "g"}]}  # fmt: skip
    chat = parse_records(read_records(_jsonl(tmp_path, [share])), "chat")[0]
    assert [m["role"] for m in chat.messages] == ["system", "user", "assistant"]
    pair = parse_records(
        read_records(_jsonl(tmp_path, [{"prompt": "p", "chosen": "c", "rejected": "r"}])),
        "preference",
    )[0]
    assert (pair.messages[0]["content"], pair.chosen, pair.rejected) == ("p", "c", "r")


@pytest.mark.parametrize(
    ("rows", "fmt", "expected"),
    [
        ([{"instruction": "a", "output": "b"}, {"instruction": "a", "output": "  "}], "alpaca",
         "d.jsonl:2: field 'output': empty response"),
        ([{"instruction": "a", "output": "b"}, {"output": "b"}], "alpaca",
         "d.jsonl:2: field 'instruction': missing"),
        ([{"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]}],
         "chat", "d.jsonl:1: field 'messages[0]'.role: roles out of order"),
        ([{"messages": [{"role": "user", "content": "x"}]}], "chat",
         "the last message must be the assistant's"),
        ([{"prompt": "p", "chosen": "c", "rejected": ""}], "preference",
         "d.jsonl:1: field 'rejected': empty response"),
    ],
)  # fmt: skip
def test_bad_records_name_file_line_and_field(
    tmp_path: Path, rows: list, fmt: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_records(read_records(_jsonl(tmp_path, rows)), fmt)  # type: ignore[arg-type]
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_invalid_json_line_and_csv_lines(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n\n{"text": \n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:3: invalid JSON"):
        read_records(bad)
    csv_file = tmp_path / "d.csv"
    csv_file.write_text('instruction,output\na,"b\nc"\nd,\n')  # a quoted newline in row 1
    records = read_records(csv_file)
    assert [r.line for r in records] == [2, 4]
    with pytest.raises(ConfigError, match=r"d.csv:4: field 'output': empty response"):
        parse_records(records, "alpaca")


def test_parquet_rows(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["one", "two"]}), path)
    records = read_records(path)
    assert [(r.line, r.data["text"]) for r in records] == [(1, "one"), (2, "two")]


def test_prompt_tokens_are_masked(tokenizer) -> None:
    messages = [
        {"role": "user", "content": "the cat sat on the"},
        {"role": "assistant", "content": "red mat ."},
    ]
    enc = encode_chat(tokenizer, messages, max_len=128)
    targets = [i for i, label in enumerate(enc.labels) if label != IGNORE_INDEX]
    # The targets are exactly the reply (+ EOS), at the end; everything before is prompt.
    assert targets == list(range(len(enc.labels) - len(targets), len(enc.labels)))
    reply = tokenizer.decode([enc.input_ids[i] for i in targets], skip_special_tokens=True)
    assert reply.strip() == "red mat ." and enc.input_ids[-1] == tokenizer.eos_token_id
    prompt = tokenizer.decode(enc.input_ids[: targets[0]])
    assert "the cat sat on the" in prompt and "red" not in prompt
    # The prompt is what inference feeds the model: the template with the generation prompt.
    rendered = tokenizer.apply_chat_template(
        messages[:1], tokenize=False, add_generation_prompt=True
    )
    assert enc.input_ids[: targets[0]] == tokenizer(rendered, add_special_tokens=False)["input_ids"]
    # And the loss cannot see the prompt: changing its logits changes nothing.
    batch = collate([enc], pad_id=0)
    logits = torch.randn(1, len(enc.input_ids), len(tokenizer))
    before = next_token_loss(logits, batch["labels"])
    logits[0, : targets[0] - 1] += 5 * torch.randn(targets[0] - 1, len(tokenizer))
    assert torch.equal(next_token_loss(logits, batch["labels"]), before)
    logits[0, targets[0] - 1] += 5.0 * torch.randn(len(tokenizer))  # predicts the 1st reply token
    assert not torch.equal(next_token_loss(logits, batch["labels"]), before)


def test_multi_turn_masks_every_assistant_turn_only(tokenizer) -> None:
    messages = [
        {"role": "user", "content": "the dog"},
        {"role": "assistant", "content": "blue log"},
        {"role": "user", "content": "the bird"},
        {"role": "assistant", "content": "green tree"},
    ]
    enc = encode_chat(tokenizer, messages, max_len=128)
    kept = [t for t, label in zip(enc.input_ids, enc.labels, strict=True) if label != IGNORE_INDEX]
    text = tokenizer.decode(kept, skip_special_tokens=True)
    assert "blue log" in text and "green tree" in text
    assert "dog" not in text and "bird" not in text


def test_pairs_share_the_prompt_and_text_is_all_targets(tokenizer, tmp_path: Path) -> None:
    pair = parse_records(
        read_records(
            _jsonl(tmp_path, [{"prompt": "the cat", "chosen": "red", "rejected": "blue"}])
        ),
        "preference",
    )[0]
    chosen, rejected = encode_pair(tokenizer, pair, 64)
    n_prompt = chosen.labels.index(next(x for x in chosen.labels if x != IGNORE_INDEX))
    assert chosen.input_ids[:n_prompt] == rejected.input_ids[:n_prompt]
    text = parse_records(read_records(_jsonl(tmp_path, [{"text": "the cat sat . " * 20}])), "text")
    chunks = encode_examples(tokenizer, text, max_len=16)
    assert len(chunks) > 1 and all(c.input_ids == c.labels for c in chunks)
    assert max(len(c.input_ids) for c in chunks) == 16


def test_packing_and_seeded_split() -> None:
    seqs = [Encoded([1, 2, 3], [IGNORE_INDEX, 2, 3]) for _ in range(5)]
    packed = pack(seqs, max_len=4)
    assert [len(p.input_ids) for p in packed] == [4, 4, 4, 3]
    assert sum(p.targets for p in packed) <= sum(s.targets for s in seqs)
    items = list(range(50))
    train, val = split_validation(items, 0.1, seed=3)
    assert len(val) == 5 and sorted(train + val) == items
    assert split_validation(items, 0.1, seed=3) == (train, val)
    assert split_validation(items, 0.1, seed=4)[1] != val


def test_two_ranks_see_exactly_the_global_batch_of_one() -> None:
    seqs = [
        Encoded([i, i + 1, i + 2][: 1 + i % 3], [i, i + 1, i + 2][: 1 + i % 3]) for i in range(9)
    ]
    one = iter(TrainBatches(seqs, batch_size=4, pad_id=0, seed=1))
    ranks = [
        iter(TrainBatches(seqs, batch_size=2, pad_id=0, seed=1, rank=r, world=2)) for r in (0, 1)
    ]
    for _ in range(5):  # past the end of an epoch: the stream crosses epochs the same way
        whole = next(one)["input_ids"]
        parts = [next(it)["input_ids"] for it in ranks]
        rows = [tuple(r[r != 0].tolist()) for part in parts for r in part]
        assert rows == [tuple(r[r != 0].tolist()) for r in whole]
