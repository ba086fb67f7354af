"""The tests, laid out like the package: tests/<room>/ tests rag/<room>/, and tests of rag's top-level
modules sit here. A package, so every test module is imported by its full name (tests.app.test_ui) from
the repository root, and the shared helpers here (conftest, filemakers, formatmakers, loopback, pg_local,
store_worker, ...) are imported as `tests.<helper>` from any folder."""
