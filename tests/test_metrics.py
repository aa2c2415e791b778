"""Metrics: a shared property matrix over every registered metric, plus agreement tests."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
import sacrebleu
from hypothesis import given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer

from ladder.errors import ConfigError
from ladder.evaluate import Score, get_metric, metric_names
from ladder.evaluate.normalize import squad_normalize
from ladder.evaluate.registry import Metric, needs_references


@dataclass(frozen=True)
class Row:
    """What the property tests expect of one metric."""

    maximum: float  # its value when every prediction equals its reference
    scale: str  # as written in the signature


# The shared matrix: a new metric joins by adding a row here.
MATRIX: dict[str, Row] = {
    "accuracy": Row(1.0, "0-1"),
    "precision": Row(1.0, "0-1"),
    "recall": Row(1.0, "0-1"),
    "f1": Row(1.0, "0-1"),
    "exact": Row(1.0, "0-1"),
    "squad_em": Row(1.0, "0-1"),
    "squad_f1": Row(1.0, "0-1"),
    "set_f1": Row(1.0, "0-1"),
    "bleu": Row(100.0, "0-100"),
    "chrf": Row(100.0, "0-100"),
    "rouge1": Row(1.0, "0-1"),
    "rouge2": Row(1.0, "0-1"),
    "rougeL": Row(1.0, "0-1"),
    "rougeLsum": Row(1.0, "0-1"),
}

WORD = st.text(alphabet="abcdefghij", min_size=1, max_size=6)
# Four or more words, so BLEU has 4-grams to count and ROUGE-2 has bigrams.
SENTENCE = st.lists(WORD, min_size=4, max_size=9).map(" ".join)
PAIRS = st.lists(st.tuples(SENTENCE, SENTENCE), min_size=1, max_size=6)
PROPERTY = settings(max_examples=15, deadline=None)


def no_ci(name: str) -> Metric:
    return get_metric(name, resamples=0)


# Metrics that score predictions alone; tests/test_toxicity.py covers them.
REFERENCE_FREE = {"toxicity", "toxicity_classifier"}


def test_every_registered_metric_has_a_row() -> None:
    assert set(metric_names()) == set(MATRIX) | REFERENCE_FREE
    assert {name for name in metric_names() if not needs_references(name)} == REFERENCE_FREE


@pytest.mark.parametrize("name", sorted(MATRIX))
@PROPERTY
@given(sentences=st.lists(SENTENCE, min_size=1, max_size=6))
def test_identical_prediction_scores_the_maximum(name: str, sentences: list[str]) -> None:
    score = no_ci(name).compute(sentences, sentences)
    assert score.value == pytest.approx(MATRIX[name].maximum)
    assert score.n == len(sentences)


@pytest.mark.parametrize("name", sorted(MATRIX))
@PROPERTY
@given(pairs=PAIRS)
def test_value_in_range_and_scale_in_signature(name: str, pairs: list[tuple[str, str]]) -> None:
    preds, refs = zip(*pairs, strict=True)
    score = no_ci(name).compute(list(preds), list(refs))
    assert 0.0 <= score.value <= MATRIX[name].maximum + 1e-9
    assert f"scale:{MATRIX[name].scale}" in score.signature
    assert score.signature.startswith(f"metric:{name}|")


@pytest.mark.parametrize("name", sorted(MATRIX))
@PROPERTY
@given(pairs=PAIRS, seed=st.integers(0, 1000))
def test_shuffling_pairs_together_keeps_the_value(
    name: str, pairs: list[tuple[str, str]], seed: int
) -> None:
    shuffled = list(pairs)
    random.Random(seed).shuffle(shuffled)
    before = no_ci(name).compute([p for p, _ in pairs], [r for _, r in pairs])
    after = no_ci(name).compute([p for p, _ in shuffled], [r for _, r in shuffled])
    assert after.value == pytest.approx(before.value, abs=1e-9)


@pytest.mark.parametrize("name", sorted(MATRIX))
def test_ci_brackets_the_value_and_is_in_the_signature(name: str) -> None:
    rng = random.Random(1)
    words = ["red", "green", "blue", "cat", "dog", "fish", "one", "two", "three", "four"]
    refs = [" ".join(rng.choices(words, k=6)) for _ in range(30)]
    preds = [r if rng.random() < 0.5 else " ".join(rng.choices(words, k=6)) for r in refs]
    score = get_metric(name, resamples=200, seed=3).compute(preds, refs)
    assert score.ci_low is not None and score.ci_high is not None
    assert score.ci_low <= score.value + 1e-9 <= score.ci_high + 2e-9
    assert "bs:200" in score.signature and "seed:3" in score.signature
    assert isinstance(Score(**{**score.__dict__}).to_dict()["value"], float)


def test_unknown_metric_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown metric 'blue'.*bleu.*squad_f1"):
        get_metric("blue")


def test_unknown_option_names_the_metric_and_its_options() -> None:
    with pytest.raises(ConfigError, match=r"'bleu' has no option 'stemmer'.*lowercase"):
        get_metric("bleu", stemmer=True)


def test_length_mismatch_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="predictions has 2 items, references has 1"):
        no_ci("exact").compute(["a", "b"], ["a"])


# --- agreement with the reference implementations -------------------------------------


def _corpus(seed: int, n: int = 40) -> tuple[list[str], list[str], list[str]]:
    rng = random.Random(seed)
    words = ["the", "a", "cat", "dog", "sat", "on", "mat", "big", "small", "red"]
    words += ["ran", "fast", "slowly", "home", "."]
    refs = [" ".join(rng.choices(words, k=rng.randint(3, 14))) for _ in range(n)]
    refs2 = [" ".join(rng.choices(words, k=rng.randint(3, 14))) for _ in range(n)]
    preds = [
        " ".join(w for w in r.split() if rng.random() < 0.8)
        + (" red" if rng.random() < 0.3 else "")
        for r in refs
    ]
    return preds, refs, refs2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bleu_and_chrf_equal_sacrebleu(seed: int) -> None:
    preds, refs, refs2 = _corpus(seed)
    bleu = get_metric("bleu", resamples=50).compute(preds, refs)
    assert bleu.value == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score, abs=1e-9)
    chrf = no_ci("chrf").compute(preds, refs)
    assert chrf.value == pytest.approx(sacrebleu.corpus_chrf(preds, [refs]).score, abs=1e-9)
    multi = no_ci("bleu").compute(preds, [[a, b] for a, b in zip(refs, refs2, strict=True)])
    assert multi.value == pytest.approx(sacrebleu.corpus_bleu(preds, [refs, refs2]).score)
    assert "nrefs:2" in multi.signature
    assert bleu.details["sacrebleu_signature"] in bleu.signature


def test_sentence_scores_are_sacrebleus_sentence_scores() -> None:
    preds, refs, _ = _corpus(4, n=10)
    bleu = get_metric("bleu", resamples=0, sentence_scores=True).compute(preds, refs)
    chrf = get_metric("chrf", resamples=0, sentence_scores=True).compute(preds, refs)
    assert bleu.per_example == pytest.approx(
        [sacrebleu.sentence_bleu(p, [r]).score for p, r in zip(preds, refs, strict=True)]
    )
    assert chrf.per_example == pytest.approx(
        [sacrebleu.sentence_chrf(p, [r]).score for p, r in zip(preds, refs, strict=True)]
    )


@pytest.mark.parametrize("rouge_type", ["rouge1", "rouge2", "rougeL", "rougeLsum"])
@pytest.mark.parametrize("stem", [True, False])
def test_rouge_equals_rouge_score_mean_f(rouge_type: str, stem: bool) -> None:
    preds, refs, _ = _corpus(5, n=25)
    refs = [r.replace(" . ", " .\n") for r in refs]  # sentences for rougeLsum
    scorer = rouge_scorer.RougeScorer([rouge_type], use_stemmer=stem)
    direct = [scorer.score(r, p)[rouge_type].fmeasure for p, r in zip(preds, refs, strict=True)]
    ours = get_metric(rouge_type, resamples=0, use_stemmer=stem).compute(preds, refs)
    assert ours.value == pytest.approx(sum(direct) / len(direct), abs=1e-12)
    assert ours.per_example == pytest.approx(direct)
    assert f"stem:{'yes' if stem else 'no'}" in ours.signature


def test_unicode_tokenizer_keeps_non_latin_scripts() -> None:
    preds = ["кошка сидит на ковре", "我爱北京天安门"]
    refs = ["кошка сидит на полу", "我爱北京"]
    default = get_metric("rouge1", resamples=0).compute(preds, refs)
    unicode = get_metric("rouge1", resamples=0, tokenizer="unicode").compute(preds, refs)
    assert default.value == 0.0  # rouge-score's tokenizer drops every non-ASCII letter
    # Cyrillic: 3 of 4 words shared, P = R = F = 3/4. Chinese, per character: 4 shared,
    # P = 4/7, R = 4/4, F = 2 * (4/7) / (4/7 + 1) = 8/11. Mean = (3/4 + 8/11) / 2.
    assert unicode.value == pytest.approx((3 / 4 + 8 / 11) / 2)
    assert "tok:unicode" in unicode.signature


# --- SQuAD ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("The Eiffel Tower", "eiffel tower"),
        ("  the   answer, is: an apple!  ", "answer is apple"),
        ("A", ""),
        ("theory", "theory"),  # articles are whole words only
        ("Anne's cat", "annes cat"),
        ("Café «Noir»", "café «noir»"),  # only ASCII punctuation is removed (official script)
        ("tHe\tTHE\nthe end", "end"),
        ("U.S.A.", "usa"),
    ],
)
def test_squad_normalisation(text: str, normalised: str) -> None:
    assert squad_normalize(text) == normalised


def test_squad_em_and_f1_take_the_best_gold_and_handle_no_answer() -> None:
    preds = ["the Eiffel Tower", "Paris France", "", "something", "the"]
    golds = [["Eiffel tower"], ["Lyon", "Paris"], [], [""], ["", "an"]]
    em = no_ci("squad_em").compute(preds, golds)
    f1 = no_ci("squad_f1").compute(preds, golds)
    # EM: exact, no, no-answer & empty prediction, no-answer & non-empty prediction, "the" → "".
    assert em.per_example == [1.0, 0.0, 1.0, 0.0, 1.0]
    # F1 of "paris france" vs "paris": P = 1/2, R = 1, F = 2/3 (vs "lyon": 0).
    assert f1.per_example == pytest.approx([1.0, 2 / 3, 1.0, 0.0, 1.0])


# --- classification -------------------------------------------------------------------


def test_precision_recall_f1_by_hand() -> None:
    gold = ["a", "a", "b", "b", "c"]
    pred = ["a", "b", "b", "b", "a"]
    # a: tp 1, fp 1, fn 1 → P 1/2, R 1/2, F 1/2
    # b: tp 2, fp 1, fn 0 → P 2/3, R 1,   F 2*(2/3)/(5/3) = 4/5
    # c: tp 0, fp 0, fn 1 → P 0,   R 0,   F 0
    # macro P = (1/2 + 2/3 + 0)/3 = 7/18, R = (1/2 + 1 + 0)/3 = 1/2, F = (1/2 + 4/5)/3 = 13/30
    # micro P = R = F = 3 correct / 5 = 3/5
    assert no_ci("precision").compute(pred, gold).value == pytest.approx(7 / 18)
    assert no_ci("recall").compute(pred, gold).value == pytest.approx(1 / 2)
    f1 = no_ci("f1").compute(pred, gold)
    assert f1.value == pytest.approx(13 / 30)
    assert get_metric("f1", resamples=0, average="micro").compute(pred, gold).value == 0.6
    assert f1.details["per_class"]["b"] == pytest.approx(
        {"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2}
    )
    assert f1.details["confusion_matrix"]["matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert no_ci("accuracy").compute(pred, gold).value == 0.6


def test_bad_average_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="average"):
        get_metric("f1", average="weighted")


# --- sets -----------------------------------------------------------------------------


def test_set_f1_by_hand() -> None:
    preds = ['["Paris", "lyon", "Nice"]', "[]", "red; green", '["x"]']
    refs: list[str | list[str]] = [["paris", "Lyon", "Lille", "Metz"], "[]", "green;blue", "[]"]
    score = get_metric("set_f1", resamples=0, separator=";").compute(preds, refs)  # type: ignore[arg-type]
    # 1: hits 2, P 2/3, R 2/4, F 2*(2/3)(1/2)/(2/3+1/2) = 4/7
    # 2: both empty → 1.   3: {red, green} vs {green, blue}: P = R = F = 1/2.   4: P 0 → F 0
    assert score.per_example == pytest.approx([4 / 7, 1.0, 0.5, 0.0])
    assert score.details["precision"] == pytest.approx((2 / 3 + 1 + 1 / 2 + 0) / 4)
    # micro: hits 3, predicted 3 + 0 + 2 + 1 = 6, gold 4 + 0 + 2 + 0 = 6 → P = R = F = 1/2
    assert score.details["micro"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5})


def test_set_f1_normalisation_options() -> None:
    preds, refs = ['["New  York!", "BOSTON"]'], ['["new york", "boston"]']
    assert no_ci("set_f1").compute(preds, refs).value == pytest.approx(0.5)
    loose = get_metric("set_f1", resamples=0, remove_punctuation=True).compute(preds, refs)
    assert loose.value == 1.0
    strict = get_metric(
        "set_f1", resamples=0, ignore_case=False, collapse_whitespace=False
    ).compute(preds, refs)
    assert strict.value == 0.0


def test_exact_options() -> None:
    assert no_ci("exact").compute([" Paris "], ["Paris"]).value == 1.0
    assert no_ci("exact").compute(["paris"], ["Paris"]).value == 0.0
    assert (
        get_metric("exact", resamples=0, ignore_case=True).compute(["paris"], ["Paris"]).value == 1
    )
    assert get_metric("exact", resamples=0, strip=False).compute([" Paris"], ["Paris"]).value == 0
