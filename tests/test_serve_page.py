"""The page `graft serve` answers at / (serve/page.py), over HTTP and in a real browser.

The page's files are served without the token and the API they call is not. Headless Chromium
(Debian's `chromium`) loads the page from a running test server holding tiny bundles trained
here on real rows (classification on SST-2, NER on CoNLL-2003, QA on SQuAD, causal_lm on
Multi30k prompts); the test picks a model, types a text and clicks Run as a user does (or opens
a link whose query fills the form), waits for the answer, and checks the DOM against the API's
own answer for the same input. Each page's screenshot is saved in the test's tmp_path and its
path printed.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON
messages separated by NUL bytes on its file descriptors 3 and 4), so no websocket client is
needed and one browser serves every test. `--dump-dom` with `--virtual-time-budget` (one command
per page) was tried first: it dumps a streamed answer before it arrives, since virtual time runs
on while a response body is still streaming in. Where Chromium is not installed the browser
tests skip, saying so (`make install` installs it when it runs as root).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from contextlib import contextmanager
from fnmatch import fnmatch
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, urlencode

import httpx
import pytest

from conftest import DATA, conll_sentences, tiny_recipe
from graftwork.inference.predictor import load
from graftwork.runs import finetune as pipeline
from graftwork.serve import page
from test_serve import TOKEN, running

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def predictors(
    tiny_bert,
    tiny_llama,
    sst2_small,
    conll_small,
    squad_small,
    instructions_small,
    tmp_path_factory,
):
    """Tiny bundles, one model thread each (torch's thread count is global: put back after).

    NER trains on few sentences so that it still tags entities (longer, it says O everywhere).
    The causal_lm bundle samples (seeded, and every request reseeds, so the page's stream and
    the API's answer are the same text): greedy, the barely trained model writes one word.
    """
    import torch

    saved = torch.get_num_threads()
    out = tmp_path_factory.mktemp("page")
    sampled = {"method": "lora", "generation": {"greedy": False, "temperature": 1.0}}
    runs = [
        ("sst", tiny_bert, "classification", sst2_small, 32, {}),
        ("conll", tiny_bert, "ner", conll_small, 96, {}),
        ("squad", tiny_bert, "qa", squad_small, 32, {}),
        ("gen", tiny_llama, "causal_lm", instructions_small, 16, sampled),
    ]
    bundles = {}
    for name, backbone, task, data, examples, over in runs:
        recipe = tiny_recipe(backbone, data, out, task=task, name=name, **over)
        recipe["data"]["max_train_examples"] = examples
        recipe["train"]["threads"] = 1
        bundles[name] = pipeline.train(recipe).bundle
    yield {name: load(bundle, threads=1) for name, bundle in bundles.items()}
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def url(predictors):
    """The address of one server with a token, for every test that needs no other settings."""
    with running(predictors, token=TOKEN) as (address, _):
        yield address


# The DOM, as the page holds it (outerHTML) -----------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


class Node:
    def __init__(self, tag: str, attrs: list[tuple[str, str | None]]):
        self.tag, self.attrs, self.children = tag, dict(attrs), []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def all(self, tag: str | None = None, cls: str | None = None) -> list[Node]:
        found = []
        for child in self.children:
            if isinstance(child, Node):
                classes = (child.attrs.get("class") or "").split()
                if (tag is None or child.tag == tag) and (cls is None or cls in classes):
                    found.append(child)
                found += child.all(tag, cls)
        return found

    def by_id(self, name: str) -> Node:
        return next(n for n in self.all() if n.attrs.get("id") == name)


class Tree(HTMLParser):
    """A serialized DOM (well formed, as Chromium writes it) as a tree of `Node`s."""

    def __init__(self):
        super().__init__()
        self.root = Node("#document", [])
        self.open = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, attrs)
        self.open[-1].children.append(node)
        if tag not in VOID:
            self.open.append(node)

    def handle_endtag(self, tag):
        for i in range(len(self.open) - 1, 0, -1):
            if self.open[i].tag == tag:
                del self.open[i:]
                return

    def handle_data(self, data):
        self.open[-1].children.append(data)


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`)."""

    def __init__(self, profile: Path):
        to_chromium, self.writing = os.pipe()
        self.reading, from_chromium = os.pipe()
        # Chromium's ends, moved above 9 so that putting them on 3 and 4 overwrites neither
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chromium, from_chromium)]
        os.close(to_chromium)
        os.close(from_chromium)
        flags = [
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            f"--user-data-dir={profile}",
            "--window-size=1000,760",
            "--remote-debugging-pipe",
        ]
        if os.geteuid() == 0:  # Chromium's sandbox refuses to run as root
            flags.append("--no-sandbox")
        move = f'exec "$0" "$@" 3<&{ends[0]} 4>&{ends[1]} {ends[0]}<&- {ends[1]}>&-'
        self.process = subprocess.Popen(
            ["bash", "-c", move, CHROMIUM, *flags, "about:blank"],
            pass_fds=ends,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fd in ends:
            os.close(fd)
        self.buffer, self.sent = b"", 0

    def send(self, method: str, session: str | None = None, **params) -> dict:
        """Send one command and return its result (events that arrive meanwhile are dropped)."""
        self.sent += 1
        message = {"id": self.sent, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self.writing, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 30
        while True:
            reply = self.receive(deadline)
            if reply.get("id") == self.sent:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def receive(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.reading], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer within 30 s")
            chunk = os.read(self.reading, 1 << 16)
            if not chunk:
                raise RuntimeError(f"Chromium exited ({self.process.poll()})")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def tab(self, url: str) -> Tab:
        """A new tab (its own sessionStorage: no token kept) with `url` loaded."""
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        tab = Tab(self, session, target)
        self.send("Page.navigate", session, url=url)
        tab.wait("document.readyState === 'complete' && document.getElementById('answer')")
        return tab

    def close(self) -> None:
        try:
            self.send("Browser.close")
            self.process.wait(10)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            os.close(self.writing)
            os.close(self.reading)


class Tab:
    """One page in the browser: read it, type into it, click it, as a user does."""

    def __init__(self, browser: Chromium, session: str, target: str):
        self.browser, self.session, self.target = browser, session, target

    def js(self, expression: str):
        result = self.browser.send(
            "Runtime.evaluate",
            self.session,
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, expression: str, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while not self.js(f"!!({expression})"):
            if time.monotonic() > deadline:
                status = self.js("document.body ? document.body.innerText : ''")
                raise TimeoutError(f"waited {seconds} s for {expression}; the page: {status}")
            time.sleep(0.02)

    def type(self, element: str, text: str) -> None:
        """Type `text` into the element with id `element`, replacing what it holds."""
        self.js(f"document.getElementById({element!r}).select()")
        self.browser.send("Input.insertText", self.session, text=text)

    def choose(self, element: str, value: str) -> None:
        """Pick `value` in a <select>, as a user's pick does (a change event)."""
        self.js(
            f"(s => {{ s.value = {value!r}; s.dispatchEvent(new Event('change')); }})"
            f"(document.getElementById({element!r}))"
        )

    def click(self, element: str) -> None:
        """A left click in the middle of the element with id `element`."""
        x, y = self.js(
            f"(e => {{ e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect();"
            f" return [r.x + r.width / 2, r.y + r.height / 2]; }})"
            f"(document.getElementById({element!r}))"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.browser.send(
                "Input.dispatchMouseEvent",
                self.session,
                type=kind,
                x=x,
                y=y,
                button="left",
                clickCount=1,
            )

    def answered(self) -> Node:
        """The DOM once the answer is drawn (or an error shown)."""
        self.wait("['done', 'error'].includes(document.getElementById('answer').dataset.state)")
        return self.dom()

    def dom(self) -> Node:
        tree = Tree()
        tree.feed(self.js("document.documentElement.outerHTML"))
        return tree.root

    def screenshot(self, path: Path, capsys) -> None:
        shot = self.browser.send("Page.captureScreenshot", self.session, format="png")
        path.write_bytes(base64.b64decode(shot["data"]))
        with capsys.disabled():
            print(f"\n  page screenshot: {path}")

    def close(self) -> None:
        self.browser.send("Target.closeTarget", targetId=self.target)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip(
            "headless Chromium is not installed (Debian: apt-get install chromium; "
            "`make install` installs it when run as root)"
        )
    chromium = Chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield chromium
    chromium.close()


@contextmanager
def tab(browser: Chromium, url: str):
    page = browser.tab(url)
    try:
        yield page
    finally:
        page.close()


def with_token(url: str, **query: str) -> str:
    """The page's address with the token in its fragment (never sent to the server)."""
    return f"{url}/?{urlencode(query)}#token={quote(TOKEN)}"


def api(url: str, model: str, path: str, body: dict) -> list[dict]:
    response = httpx.post(f"{url}/v1/models/{model}/{path}", json=body, headers=AUTH, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["outputs"]


# Over HTTP -----------------------------------------------------------------------------------


def test_the_page_and_its_files_need_no_token_but_the_api_does(url):
    index = httpx.get(f"{url}/")
    files = {path: httpx.get(url + path) for path in sorted(page.PUBLIC - {"/"})}
    models = httpx.get(f"{url}/v1/models")
    other = httpx.get(f"{url}/page/other.js"), httpx.get(f"{url}/page/other.js", headers=AUTH)
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert "page/page.js" in index.text
    for path, response in files.items():
        assert response.status_code == 200, path
        assert response.headers["content-type"] == page.FILES[path.rsplit("/", 1)[1]]
    assert models.status_code == 401
    assert [r.status_code for r in other] == [401, 404]  # nothing else is served unasked


def test_the_page_answers_only_the_hosts_the_api_answers(url):
    response = httpx.get(f"{url}/", headers={"Host": "rebound.example"})
    assert response.status_code == 400  # the DNS-rebinding guard covers the page too
    assert response.json()["error"]["type"] == "host_not_allowed"


def test_the_page_loads_nothing_from_elsewhere(url):
    responses = [httpx.get(url + path) for path in sorted(page.PUBLIC)]
    index = next(r for r in responses if r.url.path == "/")
    policy = index.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    tree = Tree()
    tree.feed(index.text)
    links = [n.attrs.get("src") or n.attrs.get("href") for n in tree.root.all()]
    links = [link for link in links if link]
    assert links and all(link.startswith("page/") or link == "data:," for link in links), links
    for response in responses:
        assert "http://" not in response.text and "https://" not in response.text, response.url


def test_docs_and_redoc_are_off_unless_asked_for(predictors, url):
    off = [httpx.get(f"{url}/{p}", headers=AUTH).status_code for p in ("docs", "redoc")]
    schema = httpx.get(f"{url}/openapi.json", headers=AUTH)
    with running(predictors, token=TOKEN, docs=True) as (with_docs, _):
        on = [httpx.get(f"{with_docs}/{p}", headers=AUTH).status_code for p in ("docs", "redoc")]
    assert off == [404, 404] and on == [200, 200]
    assert schema.status_code == 200
    assert "/" not in schema.json()["paths"]  # the page is no API operation


def test_every_file_of_the_page_is_package_data():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in Python 3.11 and later")
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = settings["tool"]["setuptools"]["package-data"]["graftwork.serve"]
    folder = Path(page.__file__).with_name(page.FOLDER)
    shipped = sorted(p.name for p in folder.iterdir())
    assert sorted([page.INDEX, *page.FILES]) == shipped
    for name in shipped:
        assert any(fnmatch(f"{page.FOLDER}/{name}", p) for p in patterns), name


# In headless Chromium ------------------------------------------------------------------------


SMILE = "\N{SLIGHTLY SMILING FACE} "  # offsets count code points: it is two UTF-16 units in JS


def test_the_page_shows_each_label_with_its_score(predictors, url, browser, tmp_path, capsys):
    text = "a gripping, funny film that never lets go"
    labels = predictors["sst"].id2label
    expected = api(url, "sst", "predict", {"inputs": [text], "top_k": len(labels)})[0]
    with tab(browser, with_token(url)) as page:
        page.wait("!document.getElementById('ask').hidden")
        page.choose("model", "sst")
        page.type("text", text)
        page.click("run")
        dom = page.answered()
        page.screenshot(tmp_path / "classification.png", capsys)
    answer = dom.by_id("answer")
    assert answer.attrs["data-state"] == "done", dom.by_id("error").text()
    rows = answer.all("li", "label")
    shown = [(r.attrs["data-label"], float(r.attrs["data-score"])) for r in rows]
    assert shown == [(item["label"], item["score"]) for item in expected["top_k"]]
    assert [r.all(cls="name")[0].text() for r in rows] == [label for label, _ in shown]


def test_a_link_fills_the_form_and_entities_are_marked_at_their_offsets(
    url, browser, tmp_path, capsys
):
    blocks = conll_sentences(DATA / "conll2003" / "dev.txt", 40).split("\n\n")
    texts = [SMILE + " ".join(line.split()[0] for line in b.splitlines()) for b in blocks[1:]]
    outputs = api(url, "conll", "predict", {"inputs": texts})
    tagged = ((t, out) for t, out in zip(texts, outputs, strict=True) if out["entities"])
    text, expected = next(tagged, (None, None))
    assert text is not None, "the tiny NER model tagged no entity in 40 dev sentences"
    with tab(browser, with_token(url, model="conll", text=text, run="1")) as page:
        dom = page.answered()
        page.screenshot(tmp_path / "ner.png", capsys)
    answer = dom.by_id("answer")
    assert answer.attrs["data-state"] == "done", dom.by_id("error").text()
    passage = answer.all("p", "passage")[0]
    assert passage.text() == text  # the whole text, the entities marked within it
    marks = [
        (m.text(), m.attrs["data-type"], int(m.attrs["data-start"]), int(m.attrs["data-end"]))
        for m in passage.all("mark", "entity")
    ]
    assert marks == [(e["text"], e["type"], e["start"], e["end"]) for e in expected["entities"]]


def test_the_answer_span_is_marked_in_its_context(url, browser, tmp_path, capsys):
    question = "Where was the grafting done?"
    context = SMILE + "The scion was grafted onto the rootstock in the orchard behind the house."
    expected = api(
        url, "squad", "predict", {"inputs": [{"question": question, "context": context}]}
    )
    with tab(browser, with_token(url)) as page:
        page.wait("!document.getElementById('ask').hidden")
        page.choose("model", "squad")
        page.type("question", question)
        page.type("context", context)
        page.click("run")
        dom = page.answered()
        page.screenshot(tmp_path / "qa.png", capsys)
    answer = dom.by_id("answer")
    assert answer.attrs["data-state"] == "done", dom.by_id("error").text()
    passage = answer.all("p", "passage")[0]
    assert passage.text() == context
    [mark] = passage.all("mark", "answer")
    span = expected[0]
    assert span["answer"], "the tiny QA model found no answer"
    shown = (mark.text(), int(mark.attrs["data-start"]), int(mark.attrs["data-end"]))
    assert shown == (span["answer"], span["start"], span["end"])


def test_the_page_shows_generated_text_piece_by_piece(url, browser, tmp_path, capsys):
    prompt = "Two dogs play in the snow."
    expected = api(url, "gen", "generate", {"inputs": [prompt], "max_new_tokens": 8})[0]
    with tab(browser, with_token(url)) as page:
        page.wait("!document.getElementById('ask').hidden")
        page.choose("model", "gen")
        page.type("text", prompt)
        page.type("max-new-tokens", "8")
        # every piece of text the page adds to its answer, in order
        page.js(
            "window.pieces = []; new MutationObserver(records => { for (const r of records)"
            " for (const n of r.addedNodes) if (n.nodeType === Node.TEXT_NODE)"
            " pieces.push(n.textContent); }).observe(document.getElementById('answer'),"
            " {childList: true, subtree: true})"
        )
        page.click("run")
        dom = page.answered()
        pieces = page.js("pieces")
        page.screenshot(tmp_path / "generate.png", capsys)
    answer = dom.by_id("answer")
    assert answer.attrs["data-state"] == "done", dom.by_id("error").text()
    assert answer.all("p", "generated")[0].text() == expected["generated_text"]
    streamed, final = pieces[:-1], pieces[-1]  # the pieces as they came, then the whole answer
    assert len(streamed) > 1 and "".join(streamed).strip() == final == expected["generated_text"]


def test_without_the_token_the_page_asks_for_it(predictors, url, browser, tmp_path, capsys):
    with tab(browser, f"{url}/") as page:
        page.wait("!document.getElementById('token-form').hidden")
        asked = page.dom()
        page.type("token", TOKEN)
        page.click("use-token")
        page.wait("!document.getElementById('ask').hidden")
        listed = page.js("[...document.getElementById('model').options].map(o => o.value)")
        page.screenshot(tmp_path / "token.png", capsys)
    assert "hidden" in asked.by_id("ask").attrs
    assert "needs an API token" in asked.by_id("status").text()
    assert listed == list(predictors)
