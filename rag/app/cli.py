"""The `rag` command: a thin face over the RAG API. The only place (with the UI and /v1) that turns errors into text.

`rag [--config FILE] COMMAND ...`: one argparse subparser per command; `rag eval` reads its own words
(rag/app/eval_commands.parse_eval: an action, or a test set to run). `rag ask` answers through
`RAG.chat`, the conversation entry the UI and /v1 use too.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rag.app.eval_commands import EVAL_HELP, parse_eval
from rag.config import Settings
from rag.errors import InputError, RagError
from rag.types import Answer, IngestEvent, short_source

EXIT_OK, EXIT_ERROR, EXIT_PARTIAL = 0, 1, 3


def with_index(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--index", type=Path, help="index directory (default: index/ in a checkout, else the user data folder; built from the seed article on first use)")
    g.add_argument("--collection", metavar="NAME", help="a named collection instead (`rag collections` lists them; "
                                                        "`rag ingest --collection NAME` creates one; default: default)")
    return p


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rag", description="Ask questions about your own documents, offline, with citations.")
    parser.add_argument("--config", help="TOML config file (default: $RAG_CONFIG or ./rag.toml)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = with_index(sub.add_parser("ingest", help="add files or folders to the index"))
    p.add_argument("paths", nargs="+")
    p.add_argument("--ray", metavar="ADDRESS", dest="ray_address",
                   help="load, chunk and embed on the Ray cluster at ADDRESS (host:port of its head, or auto); "
                        "default: $RAG_RAY_ADDRESS, else here")
    p = with_index(sub.add_parser("sync", help="make the index match folders: add new and changed files, "
                                               "remove the documents of deleted files, re-key moved ones"))
    p.add_argument("folders", nargs="+")
    p.add_argument("--watch", action="store_true", help="keep syncing as files change, until Ctrl-C")
    p.add_argument("--quiet", type=float, default=1.0, metavar="SECONDS",
                   help="with --watch: sync once no change has come for this long (default: 1)")
    p = with_index(sub.add_parser("ask", help="ask a question"))
    p.add_argument("question")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--top-k", type=int, help="passages to retrieve for this question (default: the setting top_k)")
    p.add_argument("--doc", action="append", dest="documents", metavar="ID|PATH-GLOB",
                   help="answer from this document only: an id from `rag list`, or a glob on the path or file "
                        "name (e.g. '*.pdf', 'report-2024*'); repeat for several (default: all documents)")
    p.add_argument("--model", help="bundled model name, path to a .gguf, or URL of an OpenAI-compatible server")
    with_index(sub.add_parser("list", help="list indexed documents"))
    p = with_index(sub.add_parser("delete", help="remove a document by id"))
    p.add_argument("doc_id")
    p = with_index(sub.add_parser("serve", help="start the web UI and the OpenAI-compatible API (/v1)"))
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--api", action="store_true", help="serve the OpenAI-compatible API (/v1) alone, without the UI")
    # its words are its own (parse_eval): nothing after `eval` is read as an option of this parser
    sub.add_parser("eval", help=EVAL_HELP, add_help=False, prefix_chars="\0").add_argument("words", nargs=argparse.REMAINDER)
    sub.add_parser("collections", help="list the collections with their documents and chunks")
    p = sub.add_parser("config", help="print the effective settings and where each came from")
    p.add_argument("--json", action="store_true", help="print one JSON object: {setting: {value, source}}")
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line as one namespace: `command`, and for `rag eval` its action in `eval_command`."""
    args = _parser().parse_args(argv)
    if args.command == "eval":
        config = args.config
        args = parse_eval(args.words, with_index)
        args.command, args.config = "eval", config
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        # `rag eval run --top-k` sets a run's top_k (its report records the settings); `rag ask --top-k`
        # is one question's, given to RAG.chat
        run_top_k = getattr(args, "top_k", None) if args.command == "eval" else None
        settings = Settings.load(args.config, model=getattr(args, "model", None), top_k=run_top_k,
                                 index_dir=getattr(args, "index", None), ray_address=getattr(args, "ray_address", None))
        if getattr(args, "collection", None) is not None and args.command != "serve":
            settings = _use_collection(settings, args)
        return COMMANDS[args.command](args, settings)
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted; the index on disk is unchanged since its last save", file=sys.stderr)
        return 130


def _use_collection(settings: Settings, args: argparse.Namespace) -> Settings:
    """--collection NAME as the index directory it names; only `rag ingest` and `rag sync` may create one."""
    from rag.collections import Collections

    collections = Collections(settings)
    directory = collections.directory(args.collection)
    if not collections.exists(args.collection):
        if args.command not in ("ingest", "sync"):
            collections.open(args.collection)  # raises: no collection 'x'; existing: ...
        print(f"new collection {args.collection!r} in {shown(str(directory))}", file=sys.stderr)
    args.index = directory
    return settings.with_(index_dir=directory)


def _open(settings: Settings):
    from rag.pipeline import RAG

    return RAG.open(settings=settings)


def shown(text: str) -> str:
    """A file name as printed: if it holds a newline, a control character or an undecodable byte, it
    is shown quoted with those escaped (Python string syntax), so a name cannot forge a line of output,
    move the cursor, or crash print()."""
    return text if text.isprintable() else repr(text)


def _plain(text: str) -> str:
    """A reason as printed: non-printable characters escaped, no quotes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    """Each file's outcome is printed as soon as it is final; `added` only once the index holding it
    is saved, so after a Ctrl-C the files printed as added are exactly the ones kept."""
    live = sys.stderr.isatty()  # a progress line that the next line overwrites, on a terminal only
    counts = {"added": 0, "replaced": 0, "unchanged": 0, "failed": 0}

    def on_event(event: IngestEvent) -> None:
        if live:
            print("\r\x1b[K", end="", file=sys.stderr)
        if event.step == "reading":
            if live:
                print(f"[{event.done + 1}/{event.total}] reading {shown(event.path)}", end="", file=sys.stderr, flush=True)
            return
        counts[event.step] += 1
        if event.step == "failed":
            print(f"skipped   {shown(event.path)}: {_plain(event.reason)}", file=sys.stderr, flush=True)
        elif event.info is not None:
            info = event.info
            print(f"{event.step:<9} {info.id}  {info.chunks:4d} chunks  {shown(info.source)}", flush=True)

    try:
        report = _open(settings).add(args.paths, progress=True, on_event=on_event)
    except KeyboardInterrupt:
        saved = counts["added"] + counts["replaced"]
        print(f"{chr(10) if live else ''}interrupted; the {saved} file(s) reported as added or replaced above are saved in the index, "
              "the files after them are not", file=sys.stderr)
        return 130
    if counts["unchanged"]:
        print(f"unchanged {counts['unchanged']} document(s) already indexed")
    for part in report.partial:  # indexed, but not all of it
        print(f"partly    {shown(part.path)}: {_plain(part.reason)}", file=sys.stderr)
    if counts["failed"]:
        print(f"{counts['failed']} file(s) could not be indexed; the others were saved", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_PARTIAL if report.partial else EXIT_OK


def sync_line(event: IngestEvent) -> str | None:
    """The log line of one change a sync made (None for a file read or found unchanged)."""
    name = {"replaced": "changed"}.get(event.step, event.step)
    if event.step == "failed":
        return f"failed    {shown(event.path)}: {_plain(event.reason)}"
    if event.step == "moved":
        return f"moved     {shown(event.previous)} -> {shown(event.path)}"
    if event.step == "removed":
        return f"removed   {shown(event.path)}"
    if event.step in ("added", "replaced") and event.info is not None:
        return f"{name:<9} {shown(event.info.source)} ({event.info.chunks} chunks)"
    return None


def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    """One line per change; with --watch, again after every burst of changes, until Ctrl-C."""
    if args.quiet <= 0:
        raise InputError(f"--quiet must be a number of seconds above 0, not {args.quiet:g}")
    rag = _open(settings)

    def on_event(event: IngestEvent) -> None:
        line = sync_line(event)
        if line is not None:
            print(f"{time.strftime('%H:%M:%S')} {line}" if args.watch else line, flush=True)

    if not args.watch:
        r = rag.sync(args.folders, progress=sys.stderr.isatty(), on_event=on_event)
        print(f"{len(r.added)} added, {len(r.replaced)} changed, {len(r.removed)} removed, {len(r.moved)} moved, "
              f"{len(r.unchanged)} unchanged, {len(r.failed)} failed")
        return EXIT_PARTIAL if r.failed else EXIT_OK
    from rag.app.watch import watch  # watchdog only for this command

    def on_batch(report) -> None:
        if not announced:  # after the first sync, which reports what the folders held
            announced.append(True)
            print(f"watching {', '.join(shown(str(f)) for f in args.folders)}; Ctrl-C to stop", file=sys.stderr, flush=True)

    announced: list[bool] = []
    try:
        watch(rag, args.folders, on_event=on_event, on_batch=on_batch, quiet=args.quiet)
    except KeyboardInterrupt:
        print("stopped watching; every change printed above is saved in the index", file=sys.stderr)
    return EXIT_OK


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    rag = _open(settings)
    answer: Answer | None = None
    for item in rag.chat(args.question, top_k=args.top_k, documents=args.documents):
        if isinstance(item, Answer):
            answer = item
        elif not args.json:
            print(item, end="", flush=True)
    assert answer is not None
    if args.json:
        print(json.dumps(answer.to_json(), ensure_ascii=False))
        return EXIT_OK
    if answer.abstained:  # nothing was streamed: a refusal shows only itself and its reason
        print(f"{answer.text} ({answer.refusal_reason})" if answer.refusal_reason else answer.text)
        return EXIT_OK
    print("\n")
    print(f"Answer: {answer.text}")
    for c in answer.citations:
        page = f", page {c.page}" if c.page else ""
        page += f", {shown(c.location)}" if c.location else ""  # slide, sheet and rows, chapter, e-mail, cell
        page += " (text from OCR)" if c.ocr else ""
        print(f"  [{c.n}] {shown(short_source(c.source))}{page}, chars {c.start}-{c.end} (score {c.score:.2f})")
        print(f"      {c.text[:300]}")
    left_out = len(answer.sentences) - len(answer.shown)
    if left_out:
        print(f"  ({left_out} sentence{'s' if left_out > 1 else ''} of the model's answer left out: not backed by the documents)")
    return EXIT_OK


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    docs = _open(settings).documents()
    for d in docs:
        print(f"{d.id}  {d.chunks:5d} chunks  {shown(d.source)}")
    print(f"{len(docs)} document(s)")
    return EXIT_OK


def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    info = _open(settings).delete(args.doc_id)
    print(f"deleted {info.id} ({info.chunks} chunks) {shown(info.source)}")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from rag.app.server import serve  # fastapi and gradio are heavy; import them only for this command

    serve(settings, host=args.host, port=args.port, api_only=args.api, collection=args.collection)
    return EXIT_OK


def cmd_collections(args: argparse.Namespace, settings: Settings) -> int:
    from rag.collections import Collections

    infos = Collections(settings).infos()
    width = max(len(i.name) for i in infos)
    for i in infos:
        print(f"{i.name:<{width}}  {i.documents:5d} documents  {i.chunks:6d} chunks  {shown(str(i.directory))}")
    print(f"{len(infos)} collection(s)")
    return EXIT_OK


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from rag.app.eval_commands import (
        run_cli,  # matplotlib and the eval stack only for this command
    )

    return run_cli(args, settings)


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    settings, sources = Settings.load_with_sources(args.config)
    values = settings.to_json()
    if args.json:
        print(json.dumps({k: {"value": v, "source": sources[k]} for k, v in values.items()}, indent=1))
        return EXIT_OK
    width = max(map(len, values))
    for name, value in values.items():
        print(f"{name:<{width}}  {json.dumps(value):<40}  {sources[name]}")
    return EXIT_OK


COMMANDS = {"ingest": cmd_ingest, "sync": cmd_sync, "ask": cmd_ask, "list": cmd_list, "delete": cmd_delete,
            "serve": cmd_serve, "eval": cmd_eval, "collections": cmd_collections,
            "config": cmd_config}

if __name__ == "__main__":
    sys.exit(main())
