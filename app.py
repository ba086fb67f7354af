"""`python app.py` starts the web UI: the same as `rag serve` (127.0.0.1:7860 unless told otherwise)."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start the web UI (same as `rag serve`).")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--index", help="index directory (default: index/, built from seeds/ on first use)")
    parser.add_argument("--config", help="TOML config file (default: $RAG_CONFIG or ./rag.toml)")
    args = parser.parse_args(argv)

    from rag.app.cli import main as rag_main

    cli_argv = (["--config", args.config] if args.config else []) + ["serve", "--host", args.host, "--port", str(args.port)]
    if args.index:
        cli_argv += ["--index", args.index]
    return rag_main(cli_argv)


if __name__ == "__main__":
    sys.exit(main())
