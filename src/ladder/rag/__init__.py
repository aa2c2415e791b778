"""Retrieval-augmented generation. Today: text embeddings (:mod:`ladder.rag.embed`)."""
