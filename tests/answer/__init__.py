"""Tests of rag/answer/."""
