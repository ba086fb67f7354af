"""Tests of rag/ingest/."""
