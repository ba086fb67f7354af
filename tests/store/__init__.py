"""Tests of rag/store/."""
