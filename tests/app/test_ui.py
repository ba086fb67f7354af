"""The web UI's logic with fakes: upload safety, escaping, citation HTML, refusals, errors, follow-ups.

Fast: no real model, no browser. The browser end-to-end tests are in test_ui_e2e.py."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from rag.answer.answerer import REFUSAL
from rag.answer.query_rewriting import QuestionCondenser, Turn
from rag.app import render, ui, uploads
from rag.errors import ConfigError
from rag.ingest.loading import MAX_FILE_BYTES
from rag.testing import FakeLLM
from rag.types import Answer, AnswerSentence, Chunk, Citation, Passage
from tests.conftest import SEED_ARTICLE

QUESTION = "How much did Washington spend to establish the base in northern Niger?"
XSS = '<script>window.__pwned=1</script> <img src=x onerror="window.__pwned=1">'


def copy_sentence(pattern: str):
    """A fake model that copies the passage sentence matching `pattern`, citing its passage number;
    and answers a condense prompt with a fixed standalone question."""

    def reply(prompt: str) -> str:
        if "Standalone question:" in prompt:
            return "Standalone question: When did the U.S. withdrawal from Niger happen?\nextra line"
        m = re.search(r"\[(\d+)\] [^\[]*?([^.\n\[]*" + pattern + r"[^.\n]*\.)", prompt, re.S)
        return f"{m.group(2).strip()} [{m.group(1)}]" if m else REFUSAL

    return reply


def last(iterable):
    items = list(iterable)
    assert items
    return items, items[-1]


# --------------------------------------------------------------------------- upload names


@pytest.mark.parametrize(("name", "expected"), [
    ("notes.md", "notes.md"),
    ("../../etc/x.md", "x.md"),
    ("..\\..\\windows\\evil.MD", "evil.md"),
    ("/abs/path/a b<c>.txt", "a_b_c.txt"),
    ("..", "upload"),
    ("", "upload"),
    (".hidden.md", "hidden.md"),
    ("x\x00y.md", "xy.md"),
    ("rapport d'été.pdf", "rapport_d_été.pdf"),
])
def test_safe_filename(name, expected):
    assert uploads.safe_filename(name) == expected


@pytest.mark.parametrize("name", ["../../etc/x.md", "/etc/passwd.md", "..\\..\\x.md", "a/../../b.md", "....//....//c.md"])
def test_uploads_never_leave_the_upload_area(tmp_path, name):
    src = tmp_path / "src.md"
    src.write_text("Some text.", encoding="utf-8")
    area = tmp_path / "area" / "uploads"
    dest = uploads.store_upload(src, name, area)
    assert dest.parent == area.resolve()
    assert dest.read_text(encoding="utf-8") == "Some text."
    written = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert written == {src, dest}


def test_refuses_wrong_type_and_too_big(tmp_path):
    exe = tmp_path / "tool.exe"
    exe.write_bytes(b"MZ...")
    assert "not accepted" in uploads.upload_refusal(exe, exe.name)
    assert ".md" in uploads.upload_refusal(exe, exe.name)  # says what is accepted
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: no real disk use
    assert "limit is 50 MB" in uploads.upload_refusal(big, big.name)
    ok = tmp_path / "ok.md"
    ok.write_text("Fine.", encoding="utf-8")
    assert uploads.upload_refusal(ok, ok.name) is None


def test_ingest_uploads_reports_each_file(make_rag, tmp_path):
    rag = make_rag()
    area = tmp_path / "uploads"
    good = tmp_path / "good.md"
    good.write_text("The harbour of Testville opened in 1888. It has two piers.", encoding="utf-8")
    bad_type = tmp_path / "x.exe"
    bad_type.write_bytes(b"MZ")
    bad_text = tmp_path / "latin1.txt"
    bad_text.write_bytes("caf\xe9 au lait".encode("latin-1"))
    calls = []
    outcomes = uploads.ingest_uploads(rag, [str(good), str(bad_type), str(bad_text)], area,
                                 progress=lambda *a, **k: calls.append((a, k)))
    by_name = {o.name: o for o in outcomes}
    assert by_name["good.md"].ok and "chunks" in by_name["good.md"].message
    assert not by_name["x.exe"].ok and "not accepted" in by_name["x.exe"].message
    assert not by_name["latin1.txt"].ok and "UTF-8" in by_name["latin1.txt"].message
    assert sorted(p.name for p in area.iterdir()) == ["good.md"]  # refused/failed copies are not kept
    assert [d.source for d in rag.documents()] == [str((area / "good.md").resolve())]
    assert calls and calls[-1][1]["desc"] == "Done"
    report = uploads.outcomes_html(outcomes)
    assert "1 file(s) indexed, 2 refused or failed" in report


def test_traversal_upload_is_indexed_inside_the_area(make_rag, tmp_path):
    rag = make_rag()
    area = tmp_path / "index" / "uploads"
    src_dir = tmp_path / "gradio-tmp"
    src_dir.mkdir()
    src = src_dir / "..%2F..%2Fetc%2Fx.md"  # what a hostile client may send as a name
    src.write_text("Nothing to see here.", encoding="utf-8")
    outcomes = uploads.ingest_uploads(rag, [str(src)], area)
    assert outcomes[0].ok
    (doc,) = rag.documents()
    assert Path(doc.source).parent == area.resolve()


def test_delete_removes_uploaded_copy(make_rag, tmp_path):
    rag = make_rag()
    area = tmp_path / "uploads"
    src = tmp_path / "a.md"
    src.write_text("Alpha beta gamma.", encoding="utf-8")
    uploads.ingest_uploads(rag, [str(src)], area)
    (doc,) = rag.documents()
    info = rag.delete(doc.id)
    uploads.remove_uploaded_copy(info.source, area)
    assert not (area / "a.md").exists()
    outside = tmp_path / "keep.md"
    outside.write_text("x", encoding="utf-8")
    uploads.remove_uploaded_copy(str(outside), area)  # never touches files outside the upload area
    assert outside.exists()


# --------------------------------------------------------------------------- rendering


def _answer_with(passage_text: str, sentence: str, *, supported=True, extra: list[AnswerSentence] = ()) -> Answer:
    chunk = Chunk(id=0, doc_id="d1", source="/docs/evil <b>name<b>.md", text=passage_text, start=0,
                  end=len(passage_text), page=3)
    passage = Passage.of(chunk, 0.8)
    sentences = [AnswerSentence(text=sentence, citations=(1,) if supported else (), supported=supported), *extra]
    citation = Citation(n=1, text=passage_text, source=chunk.source, page=3, start=0, end=len(passage_text),
                        score=0.8, doc_id="d1")
    return Answer(question="q", text=sentence + " [1]", citations=[citation], abstained=False,
                  sentences=sentences, passages=[passage], timings={"retrieve": 0.01, "total": 0.5})


def test_passages_and_answers_are_escaped():
    passage = f"Intro sentence here. The vault code is 4711 {XSS}. Closing words."
    answer = _answer_with(passage, f"The vault code is 4711 {XSS}.",
                          extra=[AnswerSentence(text="<b>bold</b> claim.", citations=(), supported=False)])
    for out in (render.citations_html(answer), render.answer_html(answer), render.answer_html(answer, link=False)):
        assert "<script" not in out and "<img" not in out and "<b>" not in out
        assert "onerror=&quot;" in out or "onerror" not in out
    cites = render.citations_html(answer)
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in cites
    assert "&lt;img src=x onerror=&quot;window.__pwned=1&quot;&gt;" in cites
    assert "evil &lt;b&gt;name&lt;b&gt;.md" in cites
    assert "&lt;b&gt;bold&lt;/b&gt;" in render.answer_html(answer)


def test_citation_html_has_anchor_and_highlight():
    passage = ("Agadez lies about 920 kilometres northeast of Niamey. "
               "Washington spent about $110 million to establish the base in northern Niger. "
               "Construction began in 2016.")
    answer = _answer_with(passage, "Washington spent about $110 million to establish the base.")
    cites = render.citations_html(answer)
    assert 'id="cite-1"' in cites
    marks = re.findall(r'<mark class="rag-hl">(.*?)</mark>', cites)
    assert marks == ["Washington spent about $110 million to establish the base in northern Niger."]
    assert "page 3" in cites and "score 0.80" in cites
    html = render.answer_html(answer)
    assert '<a class="rag-cite-link" href="#cite-1">[1]</a>' in html
    assert "href" not in render.answer_html(answer, link=False)


def test_highlight_picks_best_sentence_per_answer_sentence():
    passage = "Cats sleep a lot. Dogs bark at night in the city. Birds sing at dawn."
    spans = render.highlight_spans(passage, ["Dogs bark at night.", "Birds sing."])
    assert [passage[a:b] for a, b in spans] == ["Dogs bark at night in the city.", "Birds sing at dawn."]
    assert render.highlight_spans(passage, ["Quantum chromodynamics."]) == []


def test_unsupported_sentences_are_flagged():
    answer = _answer_with("Alpha beta gamma.", "Alpha beta gamma.",
                          extra=[AnswerSentence(text="Paris is the capital.", citations=(), supported=False)])
    html = render.answer_html(answer)
    assert 'class="rag-unsupported"' in html and "unsupported" in html
    assert "1 sentence not supported" in html


def test_refusal_is_rendered_as_a_refusal():
    answer = Answer(question="q", text=REFUSAL, citations=[], abstained=True,
                    refusal_reason="no passage is relevant enough (best score 0.12 < 0.3)")
    html = render.answer_html(answer)
    assert 'class="rag-refusal"' in html and REFUSAL in html
    assert "best score 0.12 &lt; 0.3" in html
    assert "rag-cite-link" not in html
    assert "refused" in render.citations_html(answer)


def test_timings_html():
    html = render.timings_html({"retrieve": 0.0123, "first_token": 0.5, "generate": 1.25, "total": 2.0, "rewrite": 0.3})
    assert html.index("rewrite follow-up") < html.index("retrieve") < html.index("first token") < html.index("total")
    assert "1.25 s" in html


# --------------------------------------------------------------------------- chat handler


def test_chat_streams_then_renders_answer_with_citations(make_rag):
    rag = make_rag(copy_sentence(r"\$110 million"))
    rag.add([SEED_ARTICLE])
    steps, (messages, box, rewritten, cites, timings, session) = last(ui.ChatHandler(rag)(QUESTION, None, 3))
    streamed = [s[0][-1]["content"] for s in steps if "rag-streaming" in str(s[0][-1]["content"])]
    assert len(streamed) == 1  # the one checked sentence, once (nothing unchecked before it)
    assert "$110 million" in streamed[0]
    assert messages[0] == {"role": "user", "content": render.text_html(QUESTION)}
    assert "$110 million" in messages[-1]["content"] and 'href="#cite-1"' in messages[-1]["content"]
    assert 'id="cite-1"' in cites and "<mark" in cites
    assert "total" in timings and box == "" and rewritten == ""
    assert session["turns"][0]["standalone"] == QUESTION


def test_follow_up_is_rewritten_and_shown(make_rag):
    rag = make_rag(copy_sentence(r"\$110 million"))
    rag.add([SEED_ARTICLE])
    handler = ui.ChatHandler(rag)
    *_, first = handler(QUESTION, None, 3)
    session = first[-1]
    *_, (messages, _, rewritten, _, timings, session) = handler("and when did that happen?", session, 3)
    standalone = "When did the U.S. withdrawal from Niger happen?"
    assert standalone in rewritten
    assert "Searched for: &ldquo;" + standalone in messages[-1]["content"]
    assert session["turns"][-1]["standalone"] == standalone
    assert "rewrite follow-up" in timings
    # the retrieval used the rewritten question, and the older answer lost its links
    assert rag.llm.prompts[-1].count(standalone) == 1
    assert "href" not in messages[1]["content"] and "[1]" in messages[1]["content"]
    condense_prompt = rag.llm.prompts[1]
    assert "User: " + QUESTION in condense_prompt and "Last question: and when did that happen?" in condense_prompt


def test_chat_shows_rag_errors_and_hides_unexpected_ones(make_rag, caplog):
    rag = make_rag()
    _, (messages, box, *_rest) = last(ui.ChatHandler(rag)("x" * (rag.settings.max_question_chars + 1), None, 3))
    assert 'class="rag-error"' in messages[-1]["content"] and "the limit is" in messages[-1]["content"]
    assert box  # the question stays in the box to be fixed

    def boom(*args, **kwargs):
        raise RuntimeError("secret internals /etc/passwd")

    rag.chat = boom
    _, (messages, *_rest) = last(ui.ChatHandler(rag)("What?", None, 3))
    content = messages[-1]["content"]
    assert render.INTERNAL_ERROR in content
    assert "Traceback" not in content and "secret" not in content
    assert "secret internals" in caplog.text  # logged server-side, with the traceback


def test_empty_question_does_nothing(make_rag):
    rag = make_rag()
    (only,) = list(ui.ChatHandler(rag)("   ", None, 3))
    assert only[0] == [] and rag.llm.prompts == []


def test_api_ask_returns_structured_answer(make_rag):
    rag = make_rag(copy_sentence(r"\$110 million"))
    rag.add([SEED_ARTICLE])
    data = ui.api_ask(rag, QUESTION, 3)
    assert data["abstained"] is False and "$110 million" in data["answer"]
    assert data["citations"][0]["n"] == 1 and "$110 million" in data["citations"][0]["text"]
    assert set(data) >= {"answer", "citations", "unsupported_sentences", "refusal_reason", "timings", "question"}


# --------------------------------------------------------------------------- conversation


def test_condenser_leaves_first_question_alone():
    llm = FakeLLM(["should not be called"])
    assert QuestionCondenser(llm).condense("What is it?", []) == "What is it?"
    assert llm.prompts == []


@pytest.mark.parametrize(("reply", "expected"), [
    ("When did the withdrawal happen?", "When did the withdrawal happen?"),
    ('Standalone question: "When did the withdrawal happen?"\nMore text', "When did the withdrawal happen?"),
    ("", "and when?"),
    ("   \n  ", "and when?"),
    ("Not in the documents.", "and when?"),
    ("?!", "and when?"),
    ("word " * 200, "and when?"),
])
def test_condenser_validates_rewrite(reply, expected):
    llm = FakeLLM([reply])
    history = [Turn("Why did the U.S. leave Niger?", "The junta ended the agreement [1].")]
    assert QuestionCondenser(llm).condense("and when?", history) == expected
    prompt = llm.prompts[0]
    assert "User: Why did the U.S. leave Niger?" in prompt and "Assistant: The junta ended the agreement." in prompt


def test_condenser_keeps_last_turns_only():
    llm = FakeLLM(["Q?"])
    history = [Turn(f"question {i}", f"answer {i}") for i in range(6)]
    QuestionCondenser(llm, max_turns=2).condense("and?", history)
    assert "question 3" not in llm.prompts[0] and "question 4" in llm.prompts[0] and "question 5" in llm.prompts[0]


# --------------------------------------------------------------------------- settings & app


def test_parse_auth(monkeypatch):
    assert ui.parse_auth(None) is None and ui.parse_auth("") is None
    assert ui.parse_auth("ann:s3:cret") == [("ann", "s3:cret")]
    assert ui.parse_auth("a:1, b:2") == [("a", "1"), ("b", "2")]
    for bad in ("nopassword", ":pw", "user:"):
        with pytest.raises(ConfigError):
            ui.parse_auth(bad)


def test_model_choices_include_the_model_in_use(settings):
    s = settings.with_(model=str(Path("/models/custom.gguf")))
    assert ui.model_choices(s)[-1] == "/models/custom.gguf"


@pytest.mark.integration  # a real Gradio server on 127.0.0.1, with fakes
def test_app_serves_page_and_api_with_fakes(make_rag):
    """The whole Gradio app with fakes, over HTTP: /ask returns Answer.to_json(); errors are messages."""
    gradio_client = pytest.importorskip("gradio_client")
    rag = make_rag(copy_sentence(r"\$110 million"))
    rag.add([SEED_ARTICLE])
    demo = ui.build_app(rag)
    ui.launch(demo, "127.0.0.1", None, block=False, quiet=True)
    try:
        assert demo.local_url.startswith("http://127.0.0.1:")
        client = gradio_client.Client(demo.local_url, verbose=False)
        data = client.predict(QUESTION, 3, api_name="/ask")
        assert "$110 million" in data["answer"] and data["citations"][0]["n"] == 1
        with pytest.raises(Exception) as err:
            client.predict("   ", 3, api_name="/ask")
        assert "the question is empty" in str(err.value)
        assert "Traceback" not in str(err.value)
        api = client.view_api(print_info=False, return_format="dict")
        assert list(api["named_endpoints"]) == ["/ask"]  # the UI's own events stay private
    finally:
        demo.close()


@pytest.mark.integration  # a real Gradio server on 127.0.0.1, with fakes
def test_login_from_rag_auth(make_rag):
    gradio_client = pytest.importorskip("gradio_client")
    rag = make_rag("Not in the documents.")
    demo = ui.build_app(rag)
    ui.launch(demo, "127.0.0.1", None, block=False, quiet=True, auth=ui.parse_auth("ann:s3cret"))
    try:
        with pytest.raises(Exception):
            gradio_client.Client(demo.local_url, verbose=False)
        client = gradio_client.Client(demo.local_url, auth=("ann", "s3cret"), verbose=False)
        assert client.predict("Anything here?", 2, api_name="/ask")["abstained"] is True
    finally:
        demo.close()


def test_app_py_is_rag_serve(monkeypatch):
    import importlib.util

    from rag.config import PROJECT_ROOT

    from rag.app import server

    calls = []
    monkeypatch.setattr(server, "serve", lambda settings, host, port, api_only, collection=None: calls.append((settings, host, port)))
    spec = importlib.util.spec_from_file_location("app", PROJECT_ROOT / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    assert app.main(["--port", "7999"]) == 0
    assert app.main([]) == 0
    assert [(h, p) for _, h, p in calls] == [("127.0.0.1", 7999), ("127.0.0.1", 7860)]


def test_each_sentence_shows_its_passage_and_claim_score_on_hover_and_left_out_ones_are_not_shown():
    passage = "Intro sentence here. The vault code is 4711. Closing words."
    kept = AnswerSentence(text="The vault code is 4711.", citations=(1,), supported=True, claim=0.93)
    dropped = AnswerSentence(text="The vault is in Paris.", citations=(1,), supported=True, claim=0.2,
                             dropped="the passages do not state it as the answer (claim 0.20 < 0.7)")
    answer = _answer_with(passage, kept.text)
    answer.sentences = [kept, dropped]
    out = render.answer_html(answer)
    assert 'title="Backed by passage [1]; claim check: 0.93 that the passage states it as the answer"' in out
    assert "Paris" not in out and "1 sentence of the model's answer left out" in out
    unjudged = render.check_title(AnswerSentence(text="x.", citations=(1, 2), supported=True))
    assert unjudged == "Backed by passages [1], [2]; claim check: not run"
