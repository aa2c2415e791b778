"""Vocabularies of the generated skill corpus (:mod:`ladder.data.corpus_skills`).

Generic English words for the sentence frames, and a generator of invented names. Kept
apart from the generators so that the test holding the corpus apart from the example tasks
(``tests/test_corpus_skills.py``) reads the same lists the corpus is made from.
"""

from __future__ import annotations

import random

__all__ = [
    "ADJECTIVES",
    "CREATIONS",
    "KINDS",
    "LABEL_SETS",
    "MARK_LETTERS",
    "NOUNS",
    "PLACES",
    "PRAISES",
    "ROLES",
    "TRADES",
    "UNITS",
    "invented_word",
]

# Every invented word holds one of these letters: the example tasks' invented names
# (examples/rag-qa) are made without them, so the two can never share a name.
MARK_LETTERS = "chjwxyq"
_ONSETS = ("b", "c", "ch", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "qu", "r", "s",
           "sh", "t", "th", "v", "w", "y", "z", "cl", "gr", "pl", "st", "wh", "x")  # fmt: skip
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ai", "ou", "y")
_CODAS = ("", "", "", "n", "r", "l", "s", "m", "k", "x", "ch", "th")

# People's roles in a place (no role the example tasks ask about).
ROLES = ("leader", "captain", "keeper", "teacher", "owner", "chief", "judge", "healer",
         "warden", "elder", "treasurer", "herald", "steward", "architect", "poet", "doctor",
         "gardener", "baker", "scribe", "guardian", "president", "chancellor",
         "sheriff")  # fmt: skip
# Past participles: "It was VERB in YEAR by PERSON" (not "founded": the example's own fact).
CREATIONS = ("built", "opened", "named", "settled", "discovered", "designed", "mapped",
             "established", "started", "planned", "raised", "rebuilt", "charted",
             "restored", "claimed")  # fmt: skip
PLACES = ("lake", "hill", "coast", "road", "bay", "forest", "plain", "canal", "cliff",
          "mountain", "marsh", "harbour", "desert", "glacier", "pass", "spring", "moor",
          "cape", "ridge", "meadow")  # fmt: skip
PRAISES = ("praised", "noted", "loved", "remembered", "admired", "prized", "famed",
           "celebrated", "valued", "envied")  # fmt: skip
# (base form, third person): "It VERBS THING" / "What does X VERB?"
TRADES = (("sell", "sells"), ("grow", "grows"), ("export", "exports"), ("brew", "brews"),
          ("weave", "weaves"), ("trade", "trades"), ("carve", "carves"), ("bake", "bakes"),
          ("forge", "forges"), ("dye", "dyes"), ("ship", "ships"), ("mine", "mines"))  # fmt: skip
ADJECTIVES = ("red", "green", "iron", "oak", "silk", "salt", "stone", "silver", "golden",
              "wooden", "linen", "amber", "cedar", "brass", "smoked", "sweet", "bitter",
              "striped", "painted", "tiny", "heavy", "pine", "bronze", "marble", "velvet",
              "leather", "apple", "rye", "dried", "spiced")  # fmt: skip
NOUNS = ("boats", "lamps", "rugs", "nails", "barrels", "hats", "bowls", "drums", "boots",
         "ropes", "maps", "clocks", "combs", "jars", "coins", "saddles", "flutes", "masks",
         "tiles", "sails", "bread", "tea", "soap", "ink", "beer", "salt", "figs",
         "carpets", "baskets", "spoons")  # fmt: skip
UNITS = ("bridges", "towers", "wells", "gates", "mills", "markets", "temples", "harbours",
         "libraries", "fountains", "inns", "farms", "schools", "squares")  # fmt: skip
# What a subject is, and the kinds of names an extraction asks for.
KINDS = ("town", "village", "city", "island", "castle", "guild", "ship", "school", "mill",
         "bridge", "company", "valley", "tribe", "farm", "harbour", "fortress", "abbey",
         "market", "tool", "fruit", "bird", "game", "dance", "song", "fabric", "planet",
         "recipe", "spice", "gem", "herb")  # fmt: skip
LABEL_SETS = (("warm", "cold"), ("north", "south"), ("yes", "no"), ("up", "down"),
              ("early", "late"), ("red", "blue", "green"), ("small", "large"),
              ("left", "right", "centre"), ("open", "closed"), ("alpha", "beta", "gamma"),
              ("wet", "dry"), ("fast", "slow"), ("sweet", "sour", "salty"),
              ("day", "night"), ("old", "new"), ("one", "two", "three"))  # fmt: skip


def invented_word(rng: random.Random, syllables: int) -> str:
    """A made-up lower-case word of ``syllables`` syllables holding a mark letter."""
    while True:
        parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
                 for _ in range(syllables)]  # fmt: skip
        word = "".join(parts)
        if len(word) >= 3 and any(c in MARK_LETTERS for c in word):
            return word
