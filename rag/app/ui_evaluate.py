"""The web UI's Evaluate tab and the chat's feedback buttons (mounted by rag/app/ui.py).

Evaluate: choose a collection (the page's picker), upload a test set (JSONL or SQuAD JSON, as
`rag eval run` takes; a SQuAD file's questions are asked of the collection, its contexts are not indexed)
or use the collection's own one (grown from the chat), run it in the background with live progress and
Cancel; see the metrics, plots and every item (filters: wrong, refused, false refusal, unsupported);
download the reports; compare with a kept run (paired sign test, changed items, metrics side by side);
see the history of the collection's runs; fix the gold answer of, or delete, items of its own test set.

Feedback: under the chat, "Right", "Wrong" and "Should have refused" save the last answer to the
collection's own test set (rag/evaluation/feedback.py).

Who sees what: the user comes from the login on every call (`user_of(request)`); a collection's runs and
test set are read only where the user may see the collection, and written (a run, a mark, an edit) only
where they may change it (their private collection; a shared one if they are an admin), exactly as
for documents (rag/collections.py). Every piece of text that reaches HTML goes through `esc`.

The handlers are top-level functions of (collections, jobs, ..., user) so tests call them directly;
`build_evaluate_tab` and `build_feedback_row` only lay out the components and wire them.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from rag.app.eval_html import FILTERS, items_html, metrics_html, progress_html
from rag.app.render import error_html, esc, user_message
from rag.app.ui_collections import user_of, with_request
from rag.collections import Collections
from rag.errors import InputError
from rag.evaluation import feedback as F
from rag.evaluation import history as H
from rag.evaluation.jobs import EvalJob, EvalJobs
from rag.evaluation.report import compare_reports
from rag.evaluation.testsets import TestSet, load_testset

OWN_SET = "This collection's own test set (from the chat)"
UPLOADED = "The uploaded file"
MARKS = {"right": "Right", "wrong": "Wrong", "should_refuse": "Should have refused"}
POLL_SECONDS = 1.0


# --------------------------------------------------------------------------- who may see and change what

def folder_for(collections: Collections, name: str | None, user: str | None, *, write: bool = False) -> tuple[str, Path]:
    """The collection's name and folder, if `user` may see it (and change it, with `write`); InputError
    otherwise, the same as for a collection that does not exist."""
    name = name or collections.names(user)[0]
    if write:
        collections.writable(name, user)
    elif name not in collections.names(user):
        collections.open(name, user)  # raises "no collection 'x'; yours: ..."
    return name, collections.directory(name)


def owner_of(user: str | None) -> str:
    return user or ""


# --------------------------------------------------------------------------- running

def load_chosen_testset(collections: Collections, name: str | None, user: str | None, source: str | None,
                        upload: str | None) -> TestSet:
    """The test set the user chose: their uploaded file, or the collection's own."""
    if source == OWN_SET:
        _, folder = folder_for(collections, name, user)
        return F.load_feedback_testset(folder)
    if not upload:
        raise InputError("upload a test set first (JSONL or SQuAD JSON), or choose the collection's own test set")
    return load_testset(upload)


def start_run(collections: Collections, jobs: EvalJobs, name: str | None, user: str | None, source: str | None,
              upload: str | None) -> EvalJob:
    """Start evaluating the chosen test set on collection `name` in the background (the run is kept in
    the collection's folder, so the user must be allowed to change the collection)."""
    name, folder = folder_for(collections, name, user, write=True)
    testset = load_chosen_testset(collections, name, user, source, upload)
    rag = collections.open(name, user)
    return jobs.start(owner_of(user), name, rag, testset, folder, collections.llm_lock)


# --------------------------------------------------------------------------- showing a run

def served_copies(paths: list[Path]) -> list[str]:
    """Copies of a run's files in a temporary folder, which Gradio serves (the collection folder may be
    anywhere, e.g. the user data folder, which it does not)."""
    out = []
    target = Path(tempfile.mkdtemp(prefix="rag-eval-"))
    for p in paths:
        if p.is_file():
            out.append(str(shutil.copy2(p, target / p.name)))
    return out


def run_view(collections: Collections, name: str | None, user: str | None, run_id: str,
             which: str | None = "all") -> tuple[str, list[str], str, list[str]]:
    """A kept run: (metrics HTML, its plots, items HTML, the report files to download)."""
    _, folder = folder_for(collections, name, user)
    json_path, md_path = H.run_files(folder, run_id)
    report = H.load_run(folder, run_id)
    plots = [md_path.with_name(f"{md_path.stem}-metrics.png"), md_path.with_name(f"{md_path.stem}-latency.png")]
    return (metrics_html(report["metrics"], bool(report.get("partial"))), served_copies(plots),
            items_html(report, which), served_copies([json_path, md_path, *plots]))


def runs_choices(collections: Collections, name: str | None, user: str | None) -> list[tuple[str, str]]:
    _, folder = folder_for(collections, name, user)
    return [(r.label(), r.run_id) for r in reversed(H.list_runs(folder))]


def history_rows(collections: Collections, name: str | None, user: str | None) -> list[list[Any]]:
    """One row per kept run, oldest first: id, test set, items, then the headline metrics."""
    _, folder = folder_for(collections, name, user)
    return [[r.run_id, r.testset, r.n_items, *(r.metrics.get(k) for k in H.HEADLINE)] for r in H.list_runs(folder)]


def history_plot(collections: Collections, name: str | None, user: str | None) -> str | None:
    """A PNG of the headline rates over the collection's runs (None before two runs)."""
    _, folder = folder_for(collections, name, user)
    runs = H.list_runs(folder)
    if len(runs) < 2:
        return None
    return str(H.plot_history(runs, Path(tempfile.mkdtemp(prefix="rag-eval-")) / "history.png"))


def compare_html(collections: Collections, name: str | None, user: str | None, run_a: str | None,
                 run_b: str | None) -> str:
    """Run B against earlier run A (`rag eval compare`): metrics side by side, the settings that differ,
    the items that changed, and the paired sign test."""
    if not run_a or not run_b:
        raise InputError("choose a run to show and an earlier run to compare it with")
    _, folder = folder_for(collections, name, user)
    text = compare_reports(H.load_run(folder, run_a), H.load_run(folder, run_b), names=("earlier", "this"))
    return f'<pre class="rag-eval-compare" id="rag-eval-compare-text">earlier = {esc(run_a)}\nthis = {esc(run_b)}\n\n{esc(text)}</pre>'


# --------------------------------------------------------------------------- the collection's own test set

def mark_answer(collections: Collections, name: str | None, user: str | None, session: dict[str, Any] | None,
                verdict: str) -> str:
    """Save the conversation's last answer to the collection's own test set; returns a status line."""
    turns = (session or {}).get("turns") or []
    if not turns:
        raise InputError("ask a question first: there is no answer to mark")
    name, folder = folder_for(collections, name, user, write=True)
    turn = turns[-1]
    abstained = bool(turn.get("abstained"))
    if verdict == "right" and abstained:
        verdict = "should_refuse"  # the refusal was right: an unanswerable item
    saved = F.record(folder, turn.get("standalone") or turn.get("question", ""), turn.get("answer", ""),
                     turn.get("citations") or [], verdict)
    what = {"right": "with this answer as the gold answer",
            "should_refuse": "as a question that must be refused",
            "wrong": "as wrong: give it the right answer in the Evaluate tab"}[verdict]
    return (f'<div class="rag-muted" id="rag-feedback-saved">Saved to the test set of {esc(name)} {what} '
            f'(item {esc(saved["id"])}).</div>')


def feedback_rows(collections: Collections, name: str | None, user: str | None) -> list[list[Any]]:
    _, folder = folder_for(collections, name, user)
    rows = []
    for r in F.load_items(folder):
        gold = ("(needs a gold answer)" if "answers" not in r else
                "(must refuse)" if not r["answers"] else " / ".join(r["answers"]))
        rows.append([r.get("id"), MARKS.get(r.get("feedback"), r.get("feedback") or ""), r.get("question"), gold])
    return rows


def fix_gold(collections: Collections, name: str | None, user: str | None, item: str | None, gold_text: str | None) -> str:
    """Set an item's gold answers: one per line; empty means the question must be refused."""
    if not item:
        raise InputError("choose an item of the collection's test set first")
    name, folder = folder_for(collections, name, user, write=True)
    answers = [line for line in (gold_text or "").splitlines() if line.strip()]
    F.set_gold(folder, item, answers)
    what = "must be refused" if not answers else f"gold: {' / '.join(answers)}"
    return f'<div class="rag-muted">Item {esc(item)} saved ({esc(what)}).</div>'


def delete_feedback_item(collections: Collections, name: str | None, user: str | None, item: str | None) -> str:
    if not item:
        raise InputError("choose an item of the collection's test set first")
    _, folder = folder_for(collections, name, user, write=True)
    F.delete(folder, item)
    return f'<div class="rag-muted">Item {esc(item)} deleted.</div>'


# --------------------------------------------------------------------------- layout and wiring

def build_feedback_row(collections: Collections, picker: Any, session: Any) -> None:
    """The chat's "Right / Wrong / Should have refused" buttons for the last answer (inside the Ask tab)."""
    import gradio as gr

    with gr.Row():
        gr.Markdown("Mark the last answer (it joins this collection's test set):", elem_classes="rag-muted")
        buttons = {v: gr.Button(label, size="sm", elem_id=f"rag-mark-{v}") for v, label in MARKS.items()}
    status = gr.HTML("", elem_id="rag-feedback-status")
    for verdict, button in buttons.items():
        def on_mark(chosen: str | None, state: dict[str, Any] | None, request=None, verdict: str = verdict) -> str:
            try:
                return mark_answer(collections, chosen, user_of(request), state, verdict)
            except Exception as exc:  # noqa: BLE001
                return error_html(user_message(exc))

        on_mark.__name__ = f"on_mark_{verdict}"
        button.click(with_request(on_mark), [picker, session], [status], api_visibility="private",
                     concurrency_id="write", concurrency_limit=1)


def build_evaluate_tab(collections: Collections, picker: Any, demo: Any, jobs: EvalJobs | None = None) -> EvalJobs:
    """The Evaluate tab's components and events (call inside `gr.Tabs()`); returns its job registry."""
    import gradio as gr

    jobs = jobs or EvalJobs()
    headline = ["run", "test set", "items", *H.HEADLINE]
    with gr.Tab("Evaluate", id="evaluate"):
        gr.Markdown("Run a test set against the chosen collection and see how good its answers are. "
                    "Runs are kept with the collection; a chat question asked during a run goes first.")
        with gr.Row():
            source = gr.Radio([UPLOADED, OWN_SET], value=UPLOADED, label="Test set", elem_id="rag-eval-source")
            upload = gr.File(label="Test set file (JSONL or SQuAD JSON)", file_types=[".jsonl", ".json"],
                             type="filepath", elem_id="rag-eval-upload")
        with gr.Row():
            run_btn = gr.Button("Run evaluation", variant="primary", elem_id="rag-eval-run")
            cancel_btn = gr.Button("Cancel", variant="stop", elem_id="rag-eval-cancel")
        progress = gr.HTML("", elem_id="rag-eval-progress")
        with gr.Row():
            runs = gr.Dropdown(label="Run shown", choices=[], elem_id="rag-eval-runs", scale=3)
            which = gr.Radio(list(FILTERS), value="all", label="Items", elem_id="rag-eval-filter", scale=3)
        metrics = gr.HTML("", elem_id="rag-eval-metrics-box")
        plots = gr.Gallery(label="Plots", columns=2, height=380, object_fit="contain", elem_id="rag-eval-plots")
        items = gr.HTML("", elem_id="rag-eval-items-box")
        downloads = gr.File(label="Reports (JSON, Markdown, plots)", file_count="multiple", interactive=False,
                            elem_id="rag-eval-downloads")
        with gr.Accordion("Compare with an earlier run", open=False):
            with gr.Row():
                earlier = gr.Dropdown(label="Earlier run", choices=[], elem_id="rag-eval-earlier", scale=3)
                compare_btn = gr.Button("Compare", elem_id="rag-eval-compare", scale=1)
            compared = gr.HTML("", elem_id="rag-eval-compare-box")
        with gr.Accordion("History of this collection's runs", open=False):
            history = gr.Dataframe(headers=headline, interactive=False, elem_id="rag-eval-history", wrap=True)
            history_img = gr.Image(label="Headline metrics per run", type="filepath", elem_id="rag-eval-history-plot")
        with gr.Accordion("This collection's own test set (from the chat)", open=False):
            own = gr.Dataframe(headers=["id", "marked", "question", "gold"], interactive=False,
                               elem_id="rag-eval-own", wrap=True)
            with gr.Row():
                own_pick = gr.Dropdown(label="Item", choices=[], elem_id="rag-eval-own-pick", scale=2)
                gold = gr.Textbox(label="Gold answers (one per line; empty: must be refused)", lines=2,
                                  elem_id="rag-eval-gold", scale=4)
            with gr.Row():
                save_gold = gr.Button("Save gold answer", elem_id="rag-eval-save-gold")
                delete_item = gr.Button("Delete item", variant="stop", elem_id="rag-eval-delete-item")
            own_status = gr.HTML("")
        refresh = gr.Button("Refresh runs and test set", size="sm", elem_id="rag-eval-refresh")

    def lists(chosen: str | None, user: str | None, shown: str | None = None):
        choices = runs_choices(collections, chosen, user)
        ids = [c[1] for c in choices]
        shown = shown if shown in ids else (ids[0] if ids else None)
        own_rows = feedback_rows(collections, chosen, user)
        return (gr.update(choices=choices, value=shown), gr.update(choices=choices[1:], value=ids[1] if len(ids) > 1 else None),
                history_rows(collections, chosen, user), history_plot(collections, chosen, user), own_rows,
                gr.update(choices=[(f"{r[0]}: {r[2][:60]}", r[0]) for r in own_rows], value=None))

    list_outputs = [runs, earlier, history, history_img, own, own_pick]
    view_outputs = [metrics, plots, items, downloads]

    def view(chosen: str | None, user: str | None, run_id: str | None, filt: str | None):
        if not run_id:
            return "", [], "", []
        return run_view(collections, chosen, user, run_id, filt)

    @with_request
    def on_eval_refresh(chosen: str | None, shown: str | None, filt: str | None, request=None):
        user = user_of(request)
        try:
            out = lists(chosen, user, shown)
            return (*out, *view(chosen, user, out[0]["value"], filt))
        except Exception as exc:  # noqa: BLE001
            gr.Warning(user_message(exc))
            return tuple(gr.skip() for _ in list_outputs + view_outputs)

    @with_request
    def on_eval_run(chosen: str | None, src: str | None, path: str | None, filt: str | None, request=None):
        user = user_of(request)
        skips = tuple(gr.skip() for _ in list_outputs + view_outputs)
        try:
            job = start_run(collections, jobs, chosen, user, src, path)
        except Exception as exc:  # noqa: BLE001
            yield error_html(user_message(exc)), *skips
            return
        while not job.wait(POLL_SECONDS):
            yield progress_html(job.snapshot()), *skips
        final = progress_html(job.snapshot())
        try:
            out = lists(chosen, user, job.run_id)
            yield final, *out, *view(chosen, user, out[0]["value"], filt)
        except Exception as exc:  # noqa: BLE001
            yield final + error_html(user_message(exc)), *skips

    @with_request
    def on_eval_cancel(request=None) -> str:
        if jobs.cancel(owner_of(user_of(request))):
            return '<div class="rag-muted">Cancelling: the run stops after the current question.</div>'
        return '<div class="rag-muted">No evaluation is running.</div>'

    @with_request
    def on_eval_view(chosen: str | None, run_id: str | None, filt: str | None, request=None):
        try:
            return view(chosen, user_of(request), run_id, filt)
        except Exception as exc:  # noqa: BLE001
            return error_html(user_message(exc)), [], "", []

    @with_request
    def on_eval_filter(chosen: str | None, run_id: str | None, filt: str | None, request=None) -> str:
        try:
            if not run_id:
                return ""
            _, folder = folder_for(collections, chosen, user_of(request))
            return items_html(H.load_run(folder, run_id), filt)
        except Exception as exc:  # noqa: BLE001
            return error_html(user_message(exc))

    @with_request
    def on_eval_compare(chosen: str | None, run_b: str | None, run_a: str | None, request=None) -> str:
        try:
            return compare_html(collections, chosen, user_of(request), run_a, run_b)
        except Exception as exc:  # noqa: BLE001
            return error_html(user_message(exc))

    @with_request
    def on_gold_pick(chosen: str | None, item: str | None, request=None) -> str:
        try:
            _, folder = folder_for(collections, chosen, user_of(request))
            found = next((r for r in F.load_items(folder) if r.get("id") == item), None)
            return "\n".join((found or {}).get("answers") or [])
        except Exception as exc:  # noqa: BLE001
            gr.Warning(user_message(exc))
            return ""

    @with_request
    def on_save_gold(chosen: str | None, item: str | None, text: str | None, shown: str | None, request=None):
        user = user_of(request)
        try:
            status = fix_gold(collections, chosen, user, item, text)
        except Exception as exc:  # noqa: BLE001
            status = error_html(user_message(exc))
        return status, feedback_rows(collections, chosen, user) if _visible(chosen, user) else []

    @with_request
    def on_delete_item(chosen: str | None, item: str | None, request=None):
        user = user_of(request)
        try:
            status = delete_feedback_item(collections, chosen, user, item)
        except Exception as exc:  # noqa: BLE001
            status = error_html(user_message(exc))
        rows = feedback_rows(collections, chosen, user) if _visible(chosen, user) else []
        return status, rows, gr.update(choices=[(f"{r[0]}: {r[2][:60]}", r[0]) for r in rows], value=None)

    def _visible(chosen: str | None, user: str | None) -> bool:
        return (chosen or collections.names(user)[0]) in collections.names(user)

    private = dict(api_visibility="private")
    for trigger in (refresh.click, picker.input, demo.load):
        trigger(on_eval_refresh, [picker, runs, which], list_outputs + view_outputs, queue=False, **private)
    run_btn.click(on_eval_run, [picker, source, upload, which], [progress, *list_outputs, *view_outputs],
                  concurrency_id="eval", concurrency_limit=4, show_progress="hidden", **private)
    cancel_btn.click(on_eval_cancel, None, [progress], queue=False, **private)
    runs.input(on_eval_view, [picker, runs, which], view_outputs, queue=False, **private)
    which.change(on_eval_filter, [picker, runs, which], [items], queue=False, **private)
    compare_btn.click(on_eval_compare, [picker, runs, earlier], [compared], queue=False, **private)
    own_pick.input(on_gold_pick, [picker, own_pick], [gold], queue=False, **private)
    save_gold.click(on_save_gold, [picker, own_pick, gold, runs], [own_status, own], concurrency_id="write",
                    concurrency_limit=1, **private)
    delete_item.click(on_delete_item, [picker, own_pick], [own_status, own, own_pick], concurrency_id="write",
                      concurrency_limit=1, **private)
    return jobs
