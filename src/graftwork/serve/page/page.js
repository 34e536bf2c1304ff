// graftwork's page: pick a served model, give it a text, see the answer (see serve/page.py).
//
// It calls the server's own /v1 API, as any client does: GET v1/models for the models, POST
// v1/models/NAME/predict for labels, entities, answer spans and seq2seq text, and POST
// v1/models/NAME/generate with "stream": true for causal_lm text, read as server-sent events.
// Answers are written with textContent, never as HTML. Offsets in answers count Unicode code
// points, so texts are cut as arrays of code points, not as JavaScript (UTF-16) strings.
//
// Query parameters fill the form: model, text, question, context, max_new_tokens; run=1 then
// submits it. A token in the fragment (#token=...) is taken and removed from the address bar.
"use strict";

const TOKEN_KEY = "graftwork-token";
const $ = (id) => document.getElementById(id);
let models = [];
let inFlight = null; // the AbortController of the request running now

// Requests ---------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

// The token as a header value: its UTF-8 bytes, one character each (what the server compares).
function bearer(token) {
  const bytes = new TextEncoder().encode(token);
  return "Bearer " + Array.from(bytes, (b) => String.fromCharCode(b)).join("");
}

async function api(path, body, signal) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = bearer(token);
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  if (!response.ok) throw await failure(response);
  return response;
}

async function failure(response) {
  try {
    const error = (await response.json()).error;
    return new ApiError(response.status, error.type, error.message);
  } catch {
    return new ApiError(response.status, "http_error", `${response.status} ${response.statusText}`);
  }
}

// Server-sent events from a fetch body: calls onEvent(event, data) for each one.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(event, JSON.parse(data.join("\n")));
    }
    if (done) return;
  }
}

// Rendering --------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  node.append(...children);
  return node;
}

const percent = (score) => `${(100 * score).toFixed(1)} %`;

function showError(error) {
  const box = $("error");
  box.textContent = error.message;
  box.hidden = false;
  $("answer").dataset.state = "error";
  if (error.status === 401) askToken("The token was refused; enter the server's API token.");
}

// Cut `text` (code points) at the spans' [start, end), marking each span with `mark`.
function marked(text, spans, mark) {
  const points = Array.from(text);
  const out = [];
  let at = 0;
  for (const span of [...spans].sort((a, b) => a.start - b.start)) {
    if (span.start < at) continue; // overlapping spans: the first one wins
    out.push(points.slice(at, span.start).join(""));
    out.push(mark(points.slice(span.start, span.end).join(""), span));
    at = span.end;
  }
  out.push(points.slice(at).join(""));
  return out;
}

const render = {
  classification(answer, output) {
    const ranked = output.top_k || [{ label: output.label, score: output.score }];
    const list = el("ol", { class: "labels" });
    for (const { label, score } of ranked) {
      list.append(
        el(
          "li",
          { class: "label", "data-label": label, "data-score": String(score) },
          el("span", { class: "name" }, label),
          el("meter", { min: "0", max: "1", value: String(score) }),
          el("span", { class: "score" }, percent(score)),
        ),
      );
    }
    answer.append(list);
  },

  ner(answer, output, inputs) {
    const text = inputs[0];
    const mark = (part, entity) =>
      el(
        "mark",
        {
          class: "entity",
          "data-type": entity.type,
          "data-start": String(entity.start),
          "data-end": String(entity.end),
          "data-score": String(entity.score),
          title: `${entity.type} ${percent(entity.score)}`,
        },
        part,
      );
    answer.append(el("p", { class: "passage" }, ...marked(text, output.entities, mark)));
    const count = output.entities.length;
    answer.append(el("p", { class: "hint" }, count ? `${count} entities` : "no entities found"));
  },

  qa(answer, output, inputs) {
    const { context } = inputs[0];
    const found = output.answer !== "" && output.start !== null;
    const mark = (part, span) =>
      el(
        "mark",
        {
          class: "answer",
          "data-start": String(span.start),
          "data-end": String(span.end),
          "data-score": String(span.score),
        },
        part,
      );
    const spans = found ? [output] : [];
    answer.append(
      el(
        "p",
        { class: "hint" },
        found ? `answer: ${output.answer} (${percent(output.score)})` : "no answer in the context",
      ),
      el("p", { class: "passage" }, ...marked(context, spans, mark)),
    );
  },

  seq2seq(answer, output) {
    answer.append(
      el("p", { class: "generated" }, output.generated_text),
      el("p", { class: "hint" }, `score ${percent(output.score)}`),
    );
  },
};

// The form ---------------------------------------------------------------------------------

const kindOf = (task) => (task === "qa" ? "qa" : task === "causal_lm" ? "generate" : "text");

function chosen() {
  return models.find((m) => m.name === $("model").value);
}

function showFields() {
  const model = chosen();
  if (!model) return;
  const kind = kindOf(model.task);
  $("text-field").hidden = kind === "qa";
  $("qa-fields").hidden = kind !== "qa";
  $("generate-fields").hidden = kind !== "generate";
  $("text-label").textContent = kind === "generate" ? "Prompt" : "Text";
  const types = [...new Set(model.labels.filter((l) => l !== "O").map((l) => l.slice(2)))];
  const labels = {
    classification: ` · labels: ${model.labels.join(", ")}`,
    ner: ` · entity types: ${types.join(", ")}`,
  };
  const state = model.ready ? "" : " · warming up";
  $("model-info").textContent =
    `${model.task} · ${model.artifact.backend}${labels[model.task] || ""}${state}`;
}

async function run(event) {
  event.preventDefault();
  const model = chosen();
  if (!model) return;
  const answer = $("answer");
  answer.replaceChildren();
  answer.dataset.task = model.task;
  answer.dataset.state = "running";
  $("error").hidden = true;
  inFlight = new AbortController();
  $("run").disabled = true;
  $("stop").hidden = false;
  try {
    if (model.task === "causal_lm") await generate(model, answer, inFlight.signal);
    else await predict(model, answer, inFlight.signal);
    answer.dataset.state = "done";
  } catch (error) {
    if (error.name === "AbortError") answer.dataset.state = "stopped";
    else showError(error);
  } finally {
    inFlight = null;
    $("run").disabled = false;
    $("stop").hidden = true;
  }
}

async function predict(model, answer, signal) {
  const inputs =
    model.task === "qa"
      ? [{ question: $("question").value, context: $("context").value }]
      : [$("text").value];
  const body = { inputs };
  if (model.task === "classification") body.top_k = Math.min(Math.max(model.labels.length, 1), 1000);
  const path = `v1/models/${encodeURIComponent(model.name)}/predict`;
  const response = await api(path, body, signal);
  const output = (await response.json()).outputs[0];
  const draw = render[model.task];
  if (draw) draw(answer, output, inputs);
  else answer.append(el("pre", {}, JSON.stringify(output, null, 2)));
}

async function generate(model, answer, signal) {
  const text = el("p", { class: "generated" });
  answer.append(text);
  const body = { inputs: [$("text").value], stream: true };
  const limit = parseInt($("max-new-tokens").value, 10);
  if (limit > 0) body.max_new_tokens = limit;
  const path = `v1/models/${encodeURIComponent(model.name)}/generate`;
  const response = await api(path, body, signal);
  let failed = null;
  await readEvents(response, (event, data) => {
    if (event === "error") failed = new ApiError(500, data.type, data.message);
    else if (data.done) text.textContent = data.generated_text;
    else text.append(data.text);
  });
  if (failed) throw failed;
}

// Start ------------------------------------------------------------------------------------

function askToken(message) {
  $("status").textContent = message;
  $("token-form").hidden = false;
  $("token").focus();
}

async function loadModels() {
  let response;
  try {
    response = await api("v1/models");
  } catch (error) {
    if (error.status === 401) askToken("This server needs an API token.");
    else $("status").textContent = `cannot list the models: ${error.message}`;
    return false;
  }
  models = (await response.json()).models;
  const select = $("model");
  select.replaceChildren(
    ...models.map((m) => el("option", { value: m.name }, `${m.name} (${m.task})`)),
  );
  $("token-form").hidden = true;
  $("ask").hidden = false;
  $("status").textContent = `${models.length} model${models.length === 1 ? "" : "s"} served`;
  return true;
}

function fillFromQuery(query) {
  if (query.has("model")) $("model").value = query.get("model");
  for (const [key, id] of [
    ["text", "text"],
    ["question", "question"],
    ["context", "context"],
    ["max_new_tokens", "max-new-tokens"],
  ]) {
    if (query.has(key)) $(id).value = query.get(key);
  }
}

async function start() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem(TOKEN_KEY, fragment.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  $("model").addEventListener("change", showFields);
  $("ask").addEventListener("submit", run);
  $("stop").addEventListener("click", () => inFlight && inFlight.abort());
  $("token-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    if (await loadModels()) showFields();
  });
  if (!(await loadModels())) return;
  const query = new URLSearchParams(location.search);
  fillFromQuery(query);
  if (!chosen()) $("model").selectedIndex = 0; // a model the server does not serve
  showFields();
  if (query.get("run") === "1") $("ask").requestSubmit();
}

start();
