"""Toxicity: the built-in lexicon scorer and a local classifier the test trains itself."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from ladder.errors import ConfigError, ModelLoadError
from ladder.evaluate import get_metric, metric_names
from ladder.evaluate.registry import needs_references
from ladder.evaluate.reward import load_reward
from ladder.evaluate.toxicity import (
    ToxicityClassifier,
    builtin_lexicon,
    find_terms,
    load_lexicon,
)

# --- lexicon ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("You IDIOT!", "idiot"),
        ("what a Moron.", "moron"),
        ("1d10t", "idiot"),  # leetspeak digits
        ("$h!t happens", "shit"),  # leetspeak symbols
        ("what the f*ck", "fuck"),  # masking
        ("s t u p i d", "stupid"),  # spaced out
        ("f.u.c.k off", "fuck"),  # dotted
        ("stuuuupid", "stupid"),  # stretched
        ("a$$$$", "ass"),  # stretched double letter
        ("Idiöt", "idiot"),  # accents
        ("іdiot", "idiot"),  # Cyrillic і
        ("idiots everywhere", "idiot"),  # plural
        ("I'll kill you", "ill kill you"),  # multi-word, apostrophe
        ('"moron"', "moron"),
    ],
)
def test_lexicon_finds_obfuscated_terms(text: str, term: str) -> None:
    assert [t for t, _ in find_terms(text)] == [term]


@pytest.mark.parametrize(
    "text",
    [
        "a classic class assignment",  # 'ass' inside words
        "Scunthorpe and Essex",
        "the 2024 report had 1337 rows",  # numbers are not leetspeak
        "you are a kind and helpful person",
        "I am ill today",  # 'ill' alone is not a threat
        "assess the passage",
        "",
    ],
)
def test_lexicon_respects_word_boundaries(text: str) -> None:
    assert find_terms(text) == []


def test_severity_weighting_pins_values() -> None:
    preds = ["you idiot", "damn it", "kill yourself", "hello there"]
    binary = get_metric("toxicity", resamples=0).compute(preds)
    severity = get_metric("toxicity", resamples=0, weighting="severity").compute(preds)
    assert binary.per_example == [1.0, 1.0, 1.0, 0.0]
    assert binary.value == 0.75
    assert severity.per_example == pytest.approx([2 / 3, 1 / 3, 1.0, 0.0])
    assert severity.value == pytest.approx(0.5)
    assert binary.details == {
        "toxic_examples": 3,
        "terms": {"idiot": 1, "damn": 1, "kill yourself": 1},
    }
    assert "weighting:severity" in severity.signature
    assert f"lexicon:builtin-{builtin_lexicon().digest}" in binary.signature


def test_toxicity_is_registered_reference_free_with_a_ci() -> None:
    assert {"toxicity", "toxicity_classifier"} <= set(metric_names())
    assert not needs_references("toxicity") and not needs_references("toxicity_classifier")
    assert needs_references("bleu")
    preds = ["you moron"] * 10 + ["nice work"] * 30
    score = get_metric("toxicity", resamples=200, seed=1).compute(preds)
    assert score.value == 0.25 and score.n == 40
    assert score.ci_low is not None and score.ci_high is not None
    assert score.ci_low < 0.25 < score.ci_high
    assert score.signature.startswith("metric:toxicity|") and "bs:200" in score.signature


def test_user_lexicon_adds_or_replaces(tmp_path: Path) -> None:
    lexicon = tmp_path / "mine.txt"
    lexicon.write_text("# my terms\n3 insult buttercup\n2 insult n00b\n")
    texts = ["hey buttercup", "you noob", "you idiot"]
    merged = get_metric("toxicity", resamples=0, lexicon=str(lexicon)).compute(texts)
    only = get_metric("toxicity", resamples=0, lexicon=str(lexicon), builtin=False)
    assert merged.per_example == [1.0, 1.0, 1.0]
    assert only.compute(texts).per_example == [1.0, 1.0, 0.0]  # 'n00b' matches 'noob'
    assert "lexicon:custom-" in merged.signature
    assert load_lexicon(lexicon).terms["buttercup"] == 3


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("2 insult ok\n5 insult bad\n", ":2: expected 'SEVERITY CATEGORY TERM'"),
        ("# none\n", "no terms"),
    ],
)
def test_bad_lexicon_file_names_file_and_line(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(ConfigError, match=needle) as info:
        get_metric("toxicity", lexicon=str(path))
    assert str(path) in str(info.value)


def test_bad_options_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="weighting 'loud'"):
        get_metric("toxicity", weighting="loud")
    with pytest.raises(ConfigError, match="no such lexicon file"):
        get_metric("toxicity", lexicon=str(tmp_path / "missing.txt"))
    with pytest.raises(ConfigError, match="needs model=PATH"):
        get_metric("toxicity_classifier")


def test_builtin_lexicon_is_package_data() -> None:
    from importlib import resources

    data = resources.files("ladder.evaluate").joinpath("data/toxicity_lexicon.txt")
    assert data.is_file()
    assert len(builtin_lexicon().terms) == 72
    assert set(builtin_lexicon().terms.values()) == {1, 2, 3}


# --- classifier ---------------------------------------------------------------------------

TOXIC = ["idiot", "moron", "loser", "trash", "stupid", "pathetic"]
CLEAN = ["friend", "helper", "star", "genius", "kind", "great"]
LOSS_FIRST = 0.6932  # cross-entropy of the untrained model: about ln 2
FILLER = ["you", "are", "a", "real", "total", "such", "today", "again", "and", "so"]


def _sentences(words: list[str], n: int, rng: random.Random) -> list[str]:
    out = []
    for _ in range(n):
        body = rng.choices(FILLER, k=rng.randint(2, 6))
        body.insert(rng.randrange(len(body) + 1), rng.choice(words))
        out.append(" ".join(body))
    return out


def build_toxicity_classifier(
    directory: Path, *, steps: int = 30, seed: int = 0
) -> tuple[Path, list[float]]:
    """Train a 1-layer BERT to tell toxic from clean generated sentences; save it.

    Returns:
        The folder and the training loss of every step.
    """
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    vocab = {
        w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *FILLER, *TOXIC, *CLEAN])
    }
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        id2label={0: "clean", 1: "toxic"},
        label2id={"clean": 0, "toxic": 1},
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    rng = random.Random(seed)
    texts = _sentences(TOXIC, 64, rng) + _sentences(CLEAN, 64, rng)
    labels = torch.tensor([1] * 64 + [0] * 64)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory, losses


@pytest.fixture(scope="module")
def trained_classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    return build_toxicity_classifier(tmp_path_factory.mktemp("tox-clf"))


@pytest.fixture
def toxicity_classifier(trained_classifier: tuple[Path, list[float]]) -> Path:
    return trained_classifier[0]


def test_classifier_training_loss_falls(trained_classifier: tuple[Path, list[float]]) -> None:
    losses = trained_classifier[1]
    assert losses[0] == pytest.approx(LOSS_FIRST, abs=1e-3)
    assert losses[-1] < 0.05 < 0.5 < losses[0]


def _held_out() -> tuple[list[str], list[str]]:
    rng = random.Random(99)
    return _sentences(TOXIC, 20, rng), _sentences(CLEAN, 20, rng)


def test_trained_classifier_separates_toxic_from_clean(toxicity_classifier: Path) -> None:
    toxic, clean = _held_out()
    clf = ToxicityClassifier(toxicity_classifier, device="cpu")
    p_toxic, p_clean = clf.probabilities(toxic), clf.probabilities(clean)
    assert min(p_toxic) > 0.9, p_toxic
    assert max(p_clean) < 0.1, p_clean
    score = get_metric(
        "toxicity_classifier", model=str(toxicity_classifier), device="cpu", resamples=0
    ).compute(toxic + clean)
    assert score.value == 0.5  # exactly the 20 toxic sentences of 40
    assert score.per_example == [1.0] * 20 + [0.0] * 20
    assert "classifier:tox-clf" in score.signature and "label:toxic" in score.signature


def test_classifier_probabilities_do_not_depend_on_batch_size(toxicity_classifier: Path) -> None:
    toxic, clean = _held_out()
    texts = [t for pair in zip(toxic, clean, strict=True) for t in pair]
    one = ToxicityClassifier(toxicity_classifier, device="cpu", batch_size=1).probabilities(texts)
    many = ToxicityClassifier(toxicity_classifier, device="cpu", batch_size=7).probabilities(texts)
    assert many == pytest.approx(one, abs=1e-5)


def test_the_metric_and_an_hf_reward_read_the_classifier_alike(toxicity_classifier: Path) -> None:
    # One loader and one batched forward pass serve both (ladder.models.hf_classifier).
    toxic, clean = _held_out()
    texts = toxic[:4] + clean[:4]
    metric = ToxicityClassifier(toxicity_classifier, device="cpu", batch_size=3)
    reward = load_reward(f"hf:{toxicity_classifier}:toxic")
    assert reward.score([""] * len(texts), texts) == pytest.approx(
        metric.probabilities(texts), abs=1e-6
    )
    assert metric.probabilities([]) == []


def test_classifier_threshold_none_gives_probabilities(toxicity_classifier: Path) -> None:
    metric = get_metric(
        "toxicity_classifier", model=str(toxicity_classifier), threshold=None, resamples=0
    )
    score = metric.compute(["you are a total idiot", "you are a real friend"])
    assert score.per_example is not None
    assert score.per_example[0] > 0.9 > 0.1 > score.per_example[1]
    assert score.details["mean_probability"] == pytest.approx(score.value)
    assert "threshold:none" in score.signature


def test_classifier_label_and_weights_are_checked(
    toxicity_classifier: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"no label 'hateful'.*clean, toxic"):
        ToxicityClassifier(toxicity_classifier, label="hateful")
    assert ToxicityClassifier(toxicity_classifier, label="TOXIC").label_index == 1
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(toxicity_classifier / name, pickled / name)
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelLoadError, match="only pickle weights"):
        ToxicityClassifier(pickled)
