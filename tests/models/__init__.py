"""Tests of rag/models/."""
