"""The built-in metrics; importing this package registers them."""

from ladder.evaluate.metrics import classification, rouge, text_match, translation

__all__ = ["classification", "rouge", "text_match", "translation"]
