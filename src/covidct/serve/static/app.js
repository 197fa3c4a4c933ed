// covidct single page: upload -> POST /explain (or /predict for ONNX models) -> slice, heatmap, bars, strip.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { model: null, result: null, selected: 0 };

function png(b64) { return b64 ? "data:image/png;base64," + b64 : ""; }
function pct(p) { return (100 * p).toFixed(1) + "%"; }

function setStatus(text, isError) {
  const el = $("status");
  el.textContent = text;
  el.className = isError ? "error" : "muted";
}

async function loadModel() {
  try {
    const res = await fetch("/model");
    state.model = await res.json();
    const m = state.model;
    $("model-line").textContent =
      `${m.name} (${m.backbone}, ${m.runtime}) · version ${m.version} · classes: ${m.classes.join(", ")}` +
      ` · input ${m.input_size}px · window W${m.window.width}/L${m.window.level}`;
  } catch (err) {
    $("model-line").textContent = "model information unavailable";
  }
}

function renderBars(probabilities, predicted) {
  const bars = $("bars");
  bars.replaceChildren();
  for (const [name, p] of Object.entries(probabilities)) {
    const row = document.createElement("div");
    row.className = "bar" + (name === predicted ? " top" : "");
    row.dataset.class = name;
    const label = document.createElement("span");
    label.textContent = name;
    const track = document.createElement("div");
    track.className = "track";
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = pct(p);
    track.appendChild(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = pct(p);
    row.append(label, track, value);
    bars.appendChild(row);
  }
}

function camFor(index) {
  return (state.result.cams || []).find((c) => c.index === index) || null;
}

function showSlice(index) {
  const r = state.result;
  const s = r.slices[index];
  state.selected = index;
  const cam = camFor(index);
  $("slice").src = cam ? png(cam.image_png) : png(s.thumbnail_png);
  const overlay = $("overlay");
  if (cam) {
    overlay.src = png(cam.heatmap_png);
    overlay.hidden = false;
  } else {
    overlay.removeAttribute("src");
    overlay.hidden = true;
  }
  $("slice-caption").textContent = `${s.source} · ${s.width}×${s.height} · ${s.predicted} ${pct(s.confidence)}` +
    (cam ? ` · Grad-CAM for ${cam.target}` : r.cams ? " · no heatmap for this slice (only the most suspicious are explained)" : "");
  for (const el of document.querySelectorAll(".thumb")) {
    el.classList.toggle("selected", Number(el.dataset.index) === index);
  }
  if (r.kind === "series") renderBars(s.probabilities, s.predicted);
}

function renderStrip(r) {
  const strip = $("strip");
  strip.replaceChildren();
  if (r.kind !== "series") { $("series").hidden = true; return; }
  $("series").hidden = false;
  $("series-count").textContent =
    `${r.slices.length} slices · series: ${r.series.predicted} ${pct(r.series.confidence)} (mean of slices)`;
  for (const s of r.slices) {
    const b = document.createElement("button");
    b.className = "thumb";
    b.dataset.index = s.index;
    b.title = `${s.source}: ${s.predicted} ${pct(s.confidence)}`;
    const img = document.createElement("img");
    img.src = png(s.thumbnail_png);
    img.alt = s.source;
    const cap = document.createElement("div");
    cap.textContent = `#${s.index} ${s.predicted} ${pct(s.confidence)}`;
    if (camFor(s.index)) { const dot = document.createElement("span"); dot.className = "cam-dot"; dot.textContent = " ●"; cap.appendChild(dot); }
    b.append(img, cap);
    b.addEventListener("click", () => showSlice(s.index));
    strip.appendChild(b);
  }
}

function render(r) {
  state.result = r;
  $("result").hidden = false;
  const overall = r.kind === "series" ? "series" : "image";
  $("prediction").textContent = `${r.predicted} (${pct(r.confidence)})`;
  $("prediction-detail").textContent = `${r.filename} · ${overall}` +
    (r.kind === "series" ? ` of ${r.slices.length} slices, mean of slice probabilities` : "") +
    ` · model ${r.model.name} ${r.model.version}` + (r.skipped.length ? ` · ${r.skipped.length} non-DICOM files ignored` : "");
  const t = r.timing;
  $("timing").textContent = `read ${t.read_ms.toFixed(0)} ms · inference ${t.inference_ms.toFixed(0)} ms` +
    (t.explain_ms != null ? ` · Grad-CAM ${t.explain_ms.toFixed(0)} ms` : "") + ` · total ${t.total_ms.toFixed(0)} ms`;
  renderStrip(r);
  const first = r.cams && r.cams.length ? r.cams[0].index : 0;
  showSlice(first);
  renderBars(r.probabilities, r.predicted);  // the overall prediction first; clicking a slice shows its own
}

async function upload(file) {
  if (!file) return;
  const explain = !state.model || state.model.explain;
  setStatus(`analysing ${file.name}…`);
  $("prediction").textContent = "";
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const res = await fetch(`/${explain ? "explain" : "predict"}?thumbnails=true`, { method: "POST", body: form });
    const body = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
    if (!res.ok) { setStatus(body.error || `HTTP ${res.status}`, true); return; }
    render(body);
    setStatus(`${file.name}: done`);
  } catch (err) {
    setStatus(`upload failed: ${err}`, true);
  }
}

function setup() {
  const drop = $("drop");
  const input = $("file-input");
  input.addEventListener("change", () => upload(input.files[0]));
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const ev of ["dragleave", "drop"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => upload(e.dataTransfer.files[0]));
  const slider = $("opacity");
  const apply = () => { $("overlay").style.opacity = slider.value / 100; $("opacity-value").textContent = slider.value + "%"; };
  slider.addEventListener("input", apply);
  apply();
  loadModel();
}

setup();
