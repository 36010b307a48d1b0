// cvserve demo page: no framework, no build step. Every call goes to the demo server
// (tools/demo/server.py), which adds TorchServe's tokens; errors are shown in words.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  catalog: null,   // GET /api/models: {models: [...], workflows: [...], max_body}
  image: null,     // {b64, url, name, width, height}
  run: 0,          // id of the latest run: answers of older runs are dropped
  drawn: false,
  drawTimer: 0,
};
const MAX_CALLS_SHOWN = 8;

// ---- calls ---------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function serverMs(res) {
  const m = /dur=([\d.]+)/.exec(res.headers.get("Server-Timing") || "");
  return m ? Number(m[1]) : null;
}

function logCall(what, ms, tsMs, status) {
  const list = $("latency-list");
  if (list.firstElementChild && list.firstElementChild.classList.contains("muted")) {
    list.textContent = "";
  }
  const li = document.createElement("li");
  const ts = tsMs === null ? "" : ` (TorchServe ${tsMs.toFixed(0)} ms)`;
  li.innerHTML = "";
  li.append(`${what} `);
  const b = document.createElement("span");
  b.className = "ms";
  b.textContent = `${ms.toFixed(0)} ms`;
  li.append(b, `${ts}${status === 200 ? "" : " · " + status}`);
  list.prepend(li);
  while (list.children.length > MAX_CALLS_SHOWN) list.lastElementChild.remove();
}

// One call to the demo server; resolves to the JSON answer, rejects with ApiError(message).
async function api(method, path, body, what) {
  const started = performance.now();
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch (err) {
    throw new ApiError(0, "The demo server is not reachable (is `make demo` still running?)");
  }
  const text = await res.text();
  const ms = performance.now() - started;
  logCall(what || `${method} ${path}`, ms, serverMs(res), res.status);
  let data = null;
  try { data = JSON.parse(text); } catch (_) { data = null; }
  if (!res.ok) {
    const message = (data && data.message) || text.trim() || res.statusText || "no answer";
    throw new ApiError(res.status, message);
  }
  if (data === null) throw new ApiError(res.status, "the answer is not JSON");
  return { data, ms, tsMs: serverMs(res) };
}

function showError(id, err) {
  const box = $(id);
  box.textContent = err.status ? `Error ${err.status}: ${err.message}` : String(err.message || err);
  box.hidden = false;
}

function clearError(id) { $(id).hidden = true; $(id).textContent = ""; }

// ---- the model list ------------------------------------------------------------------------

function selected() {
  const [kind, name] = ($("model-select").value || ":").split(":");
  if (kind === "pipeline") return { kind, name, version: "", info: null };
  const model = (state.catalog ? state.catalog.models : []).find((m) => m.name === name);
  if (!model) return { kind: "", name: "", version: "", info: null };
  const version = $("version-select").value;
  const info = model.versions.find((v) => v.version === (version || model.default_version))
    || model.versions[0];
  return { kind, name, version, info };
}

function option(value, text) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = text;
  return o;
}

function fillModels(catalog) {
  const select = $("model-select");
  select.textContent = "";
  const groups = [
    ["Classifiers", catalog.models.filter((m) => m.task === "classification"), "classification"],
    ["Segmenters", catalog.models.filter((m) => m.task === "segmentation"), "segmentation"],
    ["Pipelines", catalog.workflows, "pipeline"],
  ];
  for (const [label, items, kind] of groups) {
    if (!items.length) continue;
    const group = document.createElement("optgroup");
    group.label = label;
    for (const item of items) group.append(option(`${kind}:${item.name}`, item.name));
    select.append(group);
  }
  const count = catalog.models.length + catalog.workflows.length;
  $("server-status").textContent = count
    ? `${catalog.models.length} model(s), ${catalog.workflows.length} pipeline(s) on the server`
    : "The server lists no classifier, segmenter or pipeline.";
  $("run-button").disabled = !count;
  onModelChange();
}

function onModelChange() {
  const [kind, name] = ($("model-select").value || ":").split(":");
  const versions = $("version-select");
  versions.textContent = "";
  const model = state.catalog && state.catalog.models.find((m) => m.name === name);
  if (kind === "pipeline" || !model) {
    versions.append(option("", "—"));
    versions.disabled = true;
  } else {
    versions.disabled = false;
    versions.append(option("", `default (${model.default_version})`));
    for (const v of model.versions) versions.append(option(v.version, v.version));
  }
  onVersionChange(false);
  run();
}

function onVersionChange(rerun = true) {
  const sel = selected();
  const isClassifier = sel.kind === "classification";
  for (const el of document.querySelectorAll(".classifier-only")) el.hidden = !isClassifier;
  if (isClassifier && sel.info) {
    const target = $("target-select");
    const before = target.value;
    target.textContent = "";
    target.append(option("", "the predicted class"));
    sel.info.classes.forEach((c, i) => target.append(option(String(i), c)));
    target.value = [...target.options].some((o) => o.value === before) ? before : "";
    const topk = $("topk-input");
    topk.max = String(sel.info.classes.length);
    if (Number(topk.value) > sel.info.classes.length) topk.value = topk.max;
  }
  if (rerun) run();
}

async function loadCatalog() {
  try {
    const { data } = await api("GET", "/api/models", null, "list models");
    state.catalog = data;
    $("global-error").hidden = true;
    fillModels(data);
  } catch (err) {
    showError("global-error", err);
    $("server-status").textContent = "No model list: see the error below. ";
    const retry = document.createElement("button");
    retry.type = "button";
    retry.className = "secondary";
    retry.textContent = "Retry";
    retry.addEventListener("click", loadCatalog);
    $("server-status").append(retry);
  }
}

// ---- the image -----------------------------------------------------------------------------

function setImage(dataUrl, name) {
  const b64 = dataUrl.slice(dataUrl.indexOf(",") + 1);
  const image = { b64, url: dataUrl, name, width: 0, height: 0 };
  state.image = image;
  const img = $("preview-img");
  img.onload = () => {
    img.hidden = false;
    image.width = img.naturalWidth;
    image.height = img.naturalHeight;
    $("preview-caption").textContent = `${name} · ${image.width}×${image.height}`;
  };
  img.onerror = () => {
    img.hidden = true;  // no broken-image icon: the server's answer says what is wrong
    $("preview-caption").textContent = `${name} (the browser cannot show it)`;
  };
  img.src = dataUrl;
  $("preview-caption").textContent = name;
  $("preview-figure").hidden = false;
  run();
}

function readFile(file) {
  if (!file) return;
  const limit = state.catalog ? state.catalog.max_body : 0;
  if (limit && file.size * 4 / 3 > limit) {
    showError("global-error", new ApiError(413,
      `${file.name} is ${(file.size / 1048576).toFixed(1)} MiB; the server takes images up to ` +
      `about ${(limit * 3 / 4 / 1048576).toFixed(1)} MiB`));
    return;
  }
  const reader = new FileReader();
  reader.onload = () => setImage(reader.result, file.name);
  reader.onerror = () => showError("global-error", new Error(`cannot read ${file.name}`));
  reader.readAsDataURL(file);
}

function setupDrop() {
  const zone = $("drop-zone");
  $("file-input").addEventListener("change", (e) => readFile(e.target.files[0]));
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    zone.addEventListener(type, () => zone.classList.remove("over"));
  }
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    readFile(e.dataTransfer.files[0]);
  });
  // A file dropped next to the zone would make the browser leave the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
}

function setupCanvas() {
  const canvas = $("draw-canvas");
  const ctx = canvas.getContext("2d");
  const clear = () => {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    state.drawn = false;
  };
  clear();
  let drawing = false;
  const point = (e) => {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
  };
  canvas.addEventListener("pointerdown", (e) => {
    drawing = true;
    clearTimeout(state.drawTimer);
    canvas.setPointerCapture(e.pointerId);
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 22;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(...point(e));
    ctx.lineTo(...point(e));
    ctx.stroke();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    ctx.lineTo(...point(e));
    ctx.stroke();
    state.drawn = true;
  });
  const end = () => {
    if (!drawing) return;
    drawing = false;
    state.drawn = true;
    clearTimeout(state.drawTimer);
    state.drawTimer = setTimeout(useDrawing, 600);  // predict when the user pauses
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  $("clear-drawing").addEventListener("click", clear);
  $("use-drawing").addEventListener("click", useDrawing);
}

function useDrawing() {
  clearTimeout(state.drawTimer);
  if (!state.drawn) return;
  setImage($("draw-canvas").toDataURL("image/png"), "drawing.png");
}

// ---- running the chosen model --------------------------------------------------------------

function route(prefix, sel) {
  return `/api/${prefix}/${encodeURIComponent(sel.name)}` +
    (sel.version ? `/${encodeURIComponent(sel.version)}` : "");
}

function pct(score) { return `${(score * 100).toFixed(1)}%`; }

function png(b64) { return `data:image/png;base64,${b64}`; }

function run() {
  const sel = selected();
  if (!state.image || !sel.kind) return;
  const id = ++state.run;
  const current = () => id === state.run;
  $("results-hint").hidden = true;
  $("classifier-results").hidden = sel.kind !== "classification";
  $("segmenter-results").hidden = sel.kind !== "segmentation";
  $("pipeline-results").hidden = sel.kind !== "pipeline";
  $("global-error").hidden = true;
  if (sel.kind === "classification") runClassifier(sel, current);
  else if (sel.kind === "segmentation") runSegmenter(sel, current);
  else runPipeline(sel, current);
}

function runClassifier(sel, current) {
  const label = $("result-label");
  label.textContent = "…";
  label.dataset.ready = "";
  $("result-score").textContent = "";
  $("topk-bars").textContent = "";
  clearError("predict-error");
  clearError("explain-error");
  const heat = $("heatmap-img");
  heat.hidden = true;
  heat.dataset.ready = "";
  $("heatmap-caption").textContent = "Explanation…";
  const topk = Math.max(1, Math.min(Number($("topk-input").value) || 5, sel.info.classes.length));
  const who = `${sel.name}${sel.version ? " " + sel.version : ""}`;
  api("POST", route("predictions", sel), { image: state.image.b64, topk }, `predict ${who}`)
    .then(({ data }) => {
      if (!current()) return;
      label.textContent = data.label;
      label.dataset.ready = "1";
      $("result-score").textContent = `${pct(data.score)} · version ${data.version}`;
      const bars = $("topk-bars");
      for (const t of data.topk) {
        const row = document.createElement("div");
        row.className = "bar";
        const name = document.createElement("span");
        name.className = "name";
        name.textContent = t.label;
        const track = document.createElement("div");
        track.className = "track";
        const fill = document.createElement("div");
        fill.className = "fill";
        fill.style.width = `${Math.max(0.5, t.score * 100)}%`;
        track.append(fill);
        const value = document.createElement("span");
        value.className = "value";
        value.textContent = pct(t.score);
        row.append(name, track, value);
        bars.append(row);
      }
    })
    .catch((err) => { if (current()) { label.textContent = "–"; showError("predict-error", err); } });
  const body = { image: state.image.b64, method: $("method-select").value };
  if ($("target-select").value !== "") body.target = Number($("target-select").value);
  api("POST", route("explanations", sel), body, `explain ${who} (${body.method})`)
    .then(({ data, ms }) => {
      if (!current()) return;
      heat.src = png(data.overlay_png);
      heat.hidden = false;
      heat.dataset.ready = "1";
      const stats = data.stats || {};
      const pos = stats.positive_fraction === undefined ? "" : ` · positive ${pct(stats.positive_fraction)}`;
      $("heatmap-caption").textContent =
        `${data.method.replace(/_/g, " ")} for "${data.target.label}" (${pct(data.target.score)})${pos} · ${ms.toFixed(0)} ms`;
    })
    .catch((err) => {
      if (!current()) return;
      $("heatmap-caption").textContent = "No explanation.";
      showError("explain-error", err);
    });
}

function runSegmenter(sel, current) {
  const img = $("mask-img");
  img.hidden = true;
  img.dataset.ready = "";
  $("mask-caption").textContent = "Segmentation…";
  const tbody = $("legend").tBodies[0];
  tbody.textContent = "";
  clearError("segment-error");
  const who = `${sel.name}${sel.version ? " " + sel.version : ""}`;
  api("POST", route("predictions", sel), { image: state.image.b64, overlay: true }, `segment ${who}`)
    .then(({ data, ms }) => {
      if (!current()) return;
      img.src = png(data.overlay_png || data.mask_png);
      img.hidden = false;
      img.dataset.ready = "1";
      const total = data.width * data.height;
      $("mask-caption").textContent =
        `${data.objects.length} object(s) · ${data.width}×${data.height} · version ${data.version} · ${ms.toFixed(0)} ms`;
      const colours = sel.info ? sel.info.colors : [];
      const entries = Object.entries(data.class_pixels).sort((a, b) => b[1] - a[1]);
      for (const [name, count] of entries) {
        const tr = document.createElement("tr");
        const cls = document.createElement("td");
        const sw = document.createElement("span");
        sw.className = "swatch";
        sw.style.background = colours[data.classes.indexOf(name)] || "#888";
        cls.append(sw, name);
        const px = document.createElement("td");
        px.className = "num";
        px.textContent = String(count);
        const share = document.createElement("td");
        share.className = "num";
        share.textContent = pct(count / total);
        tr.append(cls, px, share);
        tbody.append(tr);
      }
    })
    .catch((err) => {
      if (!current()) return;
      $("mask-caption").textContent = "No segmentation.";
      showError("segment-error", err);
    });
}

function drawPipeline(data, picture) {
  const canvas = $("pipeline-canvas");
  const scale = Math.min(640 / data.width, 640 / data.height);
  canvas.width = Math.round(data.width * scale);
  canvas.height = Math.round(data.height * scale);
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = scale < 1;
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (picture) ctx.drawImage(picture, 0, 0, canvas.width, canvas.height);
  const font = Math.max(14, Math.round(canvas.width / 28));
  ctx.font = `600 ${font}px system-ui, sans-serif`;
  ctx.lineWidth = Math.max(2, canvas.width / 200);
  data.objects.forEach((o, i) => {
    const [x0, y0, x1, y1] = o.bbox.map((v) => v * scale);
    const colour = o.agree ? "#12b76a" : "#f79009";
    ctx.strokeStyle = colour;
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    const text = `${i + 1}: ${o.segmenter.label} / ${o.classifier.label}`;
    const w = ctx.measureText(text).width + 8;
    const ty = y0 - font - 6 >= 0 ? y0 - font - 6 : y1;
    ctx.fillStyle = colour;
    ctx.fillRect(x0, ty, w, font + 6);
    ctx.fillStyle = "#000";
    ctx.fillText(text, x0 + 4, ty + font);
  });
  canvas.hidden = false;
  canvas.dataset.ready = "1";
}

function runPipeline(sel, current) {
  const canvas = $("pipeline-canvas");
  canvas.hidden = true;
  canvas.dataset.ready = "";
  $("pipeline-labels").textContent = "…";
  $("pipeline-caption").textContent = "Pipeline…";
  const tbody = $("pipeline-table").tBodies[0];
  tbody.textContent = "";
  clearError("pipeline-error");
  const picture = $("preview-img");
  api("POST", `/api/wfpredict/${encodeURIComponent(sel.name)}`, { image: state.image.b64 },
    `pipeline ${sel.name}`)
    .then(({ data, ms }) => {
      if (!current()) return;
      $("pipeline-labels").textContent = data.labels.length ? data.labels.join(" ") : "(nothing found)";
      drawPipeline(data, picture.complete && picture.naturalWidth ? picture : null);
      const m = data.models || {};
      const names = m.segmenter && m.classifier
        ? ` · ${m.segmenter.name} ${m.segmenter.version} → ${m.classifier.name} ${m.classifier.version}` : "";
      $("pipeline-caption").textContent =
        `boxes: segmenter label / classifier label${names} · ${ms.toFixed(0)} ms`;
      data.objects.forEach((o, i) => {
        const tr = document.createElement("tr");
        const cells = [String(i + 1), `${o.segmenter.label} (${pct(o.segmenter.score)})`,
          `${o.classifier.label} (${pct(o.classifier.score)})`, o.agree ? "yes" : "no"];
        for (const c of cells) {
          const td = document.createElement("td");
          td.textContent = c;
          tr.append(td);
        }
        tr.lastElementChild.className = o.agree ? "agree" : "disagree";
        tbody.append(tr);
      });
    })
    .catch((err) => {
      if (!current()) return;
      $("pipeline-labels").textContent = "–";
      $("pipeline-caption").textContent = "No pipeline answer.";
      showError("pipeline-error", err);
    });
}

// ---- wiring --------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  setupDrop();
  setupCanvas();
  $("model-select").addEventListener("change", onModelChange);
  $("version-select").addEventListener("change", () => onVersionChange(true));
  for (const id of ["topk-input", "method-select", "target-select"]) {
    $(id).addEventListener("change", run);
  }
  $("run-button").addEventListener("click", run);
  loadCatalog();
});
