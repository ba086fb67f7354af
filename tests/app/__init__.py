"""Tests of rag/app/."""
