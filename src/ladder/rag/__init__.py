"""Retrieval-augmented generation: knowledge bases on LanceDB, hybrid retrieval, answers.

:mod:`~ladder.rag.readers` (files → text and sections), :mod:`~ladder.rag.chunk` (token
chunks), :mod:`~ladder.rag.embed` (embedders), :mod:`~ladder.rag.store` (LanceDB tables),
:mod:`~ladder.rag.ingest` (incremental, crash-safe indexing), :mod:`~ladder.rag.retrieve`
(dense, BM25, hybrid RRF, filters, MMR, reranking), :mod:`~ladder.rag.answer` (grounded
answers with citations), :mod:`~ladder.rag.evaluate` (recall@k, MRR, nDCG@k) and
:mod:`~ladder.rag.kb` (:class:`~ladder.rag.kb.KnowledgeBase`, the Python face of it all).
"""
