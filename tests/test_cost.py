"""Cost accounting: prices by pattern, the user's file over the built-in table, bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from ladder import cost
from ladder.cost import DEFAULT_PRICES, Price, PriceTable, cost_of, load_prices
from ladder.errors import ConfigError
from ladder.models.base import Completion, ModelInfo

MINI = ModelInfo(name="gpt-4o-mini-2024-07-18", backend="openai")
LOCAL = ModelInfo(name="my-ckpt", backend="hf")


def done(prompt: int, completion: int, latency: float = 2.0) -> Completion:
    return Completion("text", prompt, completion, "stop", latency)


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("LADDER_HOME", str(home))
    return home


def test_builtin_table_prices_api_models_and_frees_local_ones() -> None:
    # 1M in at $0.15, 2M out at $0.60: $1.35; the dated snapshot matches the glob.
    assert cost_of(MINI, done(1_000_000, 2_000_000)) == pytest.approx(1.35)
    # gpt-4o-mini must not fall through to the (dearer) gpt-4o* entry listed after it.
    four_o = ModelInfo(name="gpt-4o", backend="openai")
    assert cost_of(four_o, done(1000, 1000)) == pytest.approx((1000 * 2.5 + 1000 * 10) / 1e6)
    assert cost_of(LOCAL, done(10**6, 10**6)) == 0.0
    builtin = ModelInfo(name="builtin:tiny", backend="hf")
    assert cost_of(builtin, done(10**6, 10**6)) == 0.0


def test_unknown_model_costs_zero_and_is_logged_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cost, "_warned_unpriced", set())  # as in a fresh process
    stranger = ModelInfo(name="llama3", backend="openai")
    # Once per model per process, however many tables ask: a climb builds one per rung
    # and variant (it used to say the same thing three times).
    for _ in range(3):
        table = load_prices()
        assert cost_of(stranger, done(500, 500), prices=table) == 0.0
        assert cost_of(stranger, done(500, 500)) == 0.0
    other = ModelInfo(name="mistral", backend="openai")
    assert cost_of(other, done(1, 1)) == 0.0
    messages = [r.message for r in caplog.records]
    assert (
        messages.count("no price for openai:llama3: its cost counts as 0; add it to prices.yaml")
        == 1
    )
    assert (
        messages.count("no price for openai:mistral: its cost counts as 0; add it to prices.yaml")
        == 1
    )


def test_user_file_overrides_and_gpu_hours(_home: Path) -> None:
    _home.mkdir(parents=True, exist_ok=True)
    (_home / "prices.yaml").write_text(
        "# my prices\n"
        '"openai:gpt-4o-mini*": {input: 1.0, output: 2.0}\n'
        "my-ckpt: {gpu_hour: 3.6}\n"
        '"openai:llama3@*": {}\n'
    )
    assert cost_of(MINI, done(1_000_000, 1_000_000)) == pytest.approx(3.0)
    # A pattern without a colon matches the name alone; $3.6/hour for 2 s is $0.002.
    assert cost_of(LOCAL, done(10**6, 10**6, latency=2.0)) == pytest.approx(0.002)
    assert cost_of(LOCAL, done(1, 1, latency=8.0), gpu_seconds=1.0) == pytest.approx(0.001)
    # Editing the file is picked up without restarting (mtime and size key the cache).
    (_home / "prices.yaml").write_text('"openai:gpt-4o-mini*": {input: 10.0, output: 20.0}\n')
    assert cost_of(MINI, done(1_000_000, 0)) == pytest.approx(10.0)
    assert cost_of(LOCAL, done(10**6, 10**6, latency=2.0)) == 0.0  # back to the default


def test_first_match_wins_in_table_order() -> None:
    table = PriceTable([("*", Price(input=1.0)), ("openai:*", Price(input=5.0))])
    assert cost_of(MINI, done(10**6, 0), prices=table) == pytest.approx(1.0)
    assert list(DEFAULT_PRICES)[-1] == "hf:*"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('"gpt-4o": {input: 1.0}\n"x*": {input: -2}\n', r"prices.yaml:2: field 'x\*.input'"),
        ('"gpt-4o": {input: 1.0, outptu: 3}\n', r"prices.yaml:1: field 'gpt-4o.outptu'"),
        ("a: {input: 1}\nb:\n  output: lots\n", r"prices.yaml:3: field 'b.output'"),
        ("- gpt-4o\n", r"prices.yaml:1: expected a mapping"),
    ],
)
def test_bad_price_file_names_file_line_and_field(tmp_path: Path, text: str, where: str) -> None:
    bad = tmp_path / "prices.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=where):
        load_prices(bad)


def test_a_named_price_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such price file"):
        load_prices(tmp_path / "nope.yaml")
