"""Answering a question: rewrite it (follow-ups, HyDE) -> retrieve passages -> choose the context the
model is shown -> generate -> check every sentence against its cited passage, or refuse."""
