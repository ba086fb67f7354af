"""Tests of rag/evaluation/."""
