// The pyfill drawing board: a colour-coded label canvas with a stroke layer on top, Draw
// (POST /api/draw), and a history of results with the labels and strokes that made them.
// All painting writes whole pixels (fillRect at integer coordinates, or ImageData), so label
// colours stay exact legend colours and strokes carry no anti-aliased edges.
"use strict";

const ZOOMS = [1, 2, 3, 4, 6, 8, 12];
const PALETTE = ["#f5821e", "#e8432e", "#f7d038", "#7ac143", "#2e7d32", "#1e88e5", "#0d2b6b",
                 "#8e44ad", "#ff9ed2", "#8d6e63", "#9e9e9e", "#ffffff", "#000000"];

const $ = (id) => document.getElementById(id);
const labelsCanvas = $("labels-canvas");
const strokesCanvas = $("strokes-canvas");
const lctx = labelsCanvas.getContext("2d", { willReadFrequently: true });
const sctx = strokesCanvas.getContext("2d", { willReadFrequently: true });

const state = {
  legend: [], mode: "label", tool: "pencil", label: 0, colour: PALETTE[0], zoom: 4,
  history: [], current: -1, painting: false, last: null, busy: false,
};

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function hex(rgb) {
  return "#" + rgb.map((v) => v.toString(16).padStart(2, "0")).join("");
}

function parseHex(h) {
  return [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16));
}

function activeCtx() {
  return state.mode === "label" ? lctx : sctx;
}

// ---- canvas size and zoom ------------------------------------------------------------------
function resizeCanvases(w, h) {
  for (const c of [labelsCanvas, strokesCanvas]) {
    c.width = w;
    c.height = h;
    c.getContext("2d").imageSmoothingEnabled = false;
  }
  applyZoom();
}

function applyZoom() {
  for (const c of [labelsCanvas, strokesCanvas]) {
    c.style.width = c.width * state.zoom + "px";
    c.style.height = c.height * state.zoom + "px";
  }
  $("zoom-level").textContent = state.zoom + "x";
}

function zoomBy(step) {
  const i = Math.min(ZOOMS.length - 1, Math.max(0, ZOOMS.indexOf(state.zoom) + step));
  state.zoom = ZOOMS[i];
  applyZoom();
}

// ---- painting --------------------------------------------------------------------------------
function pixelAt(event) {
  const r = labelsCanvas.getBoundingClientRect();
  return [Math.floor((event.clientX - r.left) / r.width * labelsCanvas.width),
          Math.floor((event.clientY - r.top) / r.height * labelsCanvas.height)];
}

function stamp(x, y) {
  const s = Number($("brush-size").value);
  const x0 = x - Math.floor(s / 2), y0 = y - Math.floor(s / 2);
  if (state.mode === "label") {
    const label = state.tool === "eraser" ? 0 : state.label;
    lctx.fillStyle = hex(state.legend[label].colour);
    lctx.fillRect(x0, y0, s, s);
  } else if (state.tool === "eraser") {
    sctx.clearRect(x0, y0, s, s);
  } else {
    sctx.fillStyle = state.colour;
    sctx.fillRect(x0, y0, s, s);
  }
}

function line(a, b) {
  const steps = Math.max(Math.abs(b[0] - a[0]), Math.abs(b[1] - a[1]), 1);
  for (let i = 1; i <= steps; i++) {
    stamp(Math.round(a[0] + (b[0] - a[0]) * i / steps), Math.round(a[1] + (b[1] - a[1]) * i / steps));
  }
}

// Four-connected flood fill of the region of exactly the clicked pixel's RGBA.
function floodFill(ctx, x, y, rgba) {
  const { width: w, height: h } = ctx.canvas;
  if (x < 0 || y < 0 || x >= w || y >= h) return;
  const img = ctx.getImageData(0, 0, w, h);
  const d = new Uint32Array(img.data.buffer);
  const target = d[y * w + x];
  const fill = new Uint32Array(new Uint8ClampedArray(rgba).buffer)[0];
  if (target === fill) return;
  const stack = [y * w + x];
  while (stack.length) {
    const p = stack.pop();
    if (d[p] !== target) continue;
    d[p] = fill;
    const px = p % w;
    if (px > 0) stack.push(p - 1);
    if (px < w - 1) stack.push(p + 1);
    if (p >= w) stack.push(p - w);
    if (p < w * (h - 1)) stack.push(p + w);
  }
  ctx.putImageData(img, 0, 0);
}

function fillAt(x, y) {
  if (state.mode === "label") {
    const label = state.tool === "eraser" ? 0 : state.label;
    floodFill(lctx, x, y, [...state.legend[label].colour, 255]);
  } else {
    floodFill(sctx, x, y, [...parseHex(state.colour), 255]);
  }
}

function onPointerDown(event) {
  if (event.button !== 0) return;
  const p = pixelAt(event);
  if (state.tool === "fill") {
    fillAt(p[0], p[1]);
    return;
  }
  state.painting = true;
  state.last = p;
  stamp(p[0], p[1]);
  $("stack").setPointerCapture(event.pointerId);
}

function onPointerMove(event) {
  if (!state.painting) return;
  const p = pixelAt(event);
  line(state.last, p);
  state.last = p;
}

function onPointerUp() {
  state.painting = false;
}

// ---- legend, palette, tools ----------------------------------------------------------------
function buildLegend() {
  const ul = $("legend");
  ul.innerHTML = "";
  state.legend.forEach((entry) => {
    const li = document.createElement("li");
    li.dataset.label = entry.index;
    li.innerHTML = `<span class="swatch" style="background:${hex(entry.colour)}"></span>`;
    li.append(`${entry.index} ${entry.name}`);
    li.addEventListener("click", () => selectLabel(entry.index));
    ul.append(li);
  });
  selectLabel(state.label);
}

function selectLabel(i) {
  state.label = i;
  for (const li of $("legend").children) li.classList.toggle("active", Number(li.dataset.label) === i);
  setMode("label");
}

function buildPalette() {
  for (const c of PALETTE) {
    const b = document.createElement("button");
    b.style.background = c;
    b.dataset.colour = c;
    b.title = c;
    b.addEventListener("click", () => selectColour(c));
    $("palette").append(b);
  }
  $("custom-colour").addEventListener("input", (e) => selectColour(e.target.value));
}

function selectColour(c) {
  state.colour = c.toLowerCase();
  for (const b of $("palette").children) b.classList.toggle("active", b.dataset.colour === state.colour);
  setMode("colour");
}

function setMode(mode) {
  state.mode = mode;
  document.body.className = "mode-" + mode;
  for (const b of document.querySelectorAll("button.mode")) b.classList.toggle("active", b.dataset.mode === mode);
}

function setTool(tool) {
  state.tool = tool;
  for (const b of document.querySelectorAll("button.tool")) b.classList.toggle("active", b.dataset.tool === tool);
}

// ---- label maps: templates, save, load -----------------------------------------------------
function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("could not read the image"));
    img.src = url;
  });
}

function drawOnto(ctx, img) {
  ctx.clearRect(0, 0, ctx.canvas.width, ctx.canvas.height);
  ctx.drawImage(img, 0, 0);
}

async function setLabels(url, keepStrokes = false) {
  const img = await loadImage(url);
  if (img.width < 16 || img.height < 16 || img.width > 1024 || img.height > 1024) {
    throw new Error(`label maps are 16..1024 pixels a side, this one is ${img.width} x ${img.height}`);
  }
  if (img.width !== labelsCanvas.width || img.height !== labelsCanvas.height) {
    resizeCanvases(img.width, img.height);
  } else if (!keepStrokes) {
    sctx.clearRect(0, 0, strokesCanvas.width, strokesCanvas.height);
  }
  drawOnto(lctx, img);
  return indexToColours();
}

// A gray PNG of class indices (r = g = b < classes everywhere) becomes legend colours; any
// other colour outside the legend is reported (the server refuses it at Draw).
function indexToColours() {
  const img = lctx.getImageData(0, 0, labelsCanvas.width, labelsCanvas.height);
  const d = img.data, n = state.legend.length;
  const known = new Set(state.legend.map((e) => e.colour.join(",")));
  let isIndex = true, unknown = 0;
  for (let p = 0; p < d.length; p += 4) {
    if (!(d[p] === d[p + 1] && d[p] === d[p + 2] && d[p] < n)) isIndex = false;
    if (!known.has(`${d[p]},${d[p + 1]},${d[p + 2]}`)) unknown++;
  }
  if (isIndex) {
    for (let p = 0; p < d.length; p += 4) {
      const c = state.legend[d[p]].colour;
      d[p] = c[0]; d[p + 1] = c[1]; d[p + 2] = c[2]; d[p + 3] = 255;
    }
    lctx.putImageData(img, 0, 0);
    return 0;
  }
  return unknown;
}

async function useTemplate() {
  const name = $("templates").value;
  try {
    await setLabels(`/api/templates/${encodeURIComponent(name)}.png`);
    setStatus(`template ${name}`);
  } catch (err) {
    setStatus(err.message, true);
  }
}

async function loadLabelsFile(event) {
  const file = event.target.files[0];
  if (!file) return;
  const url = URL.createObjectURL(file);
  try {
    const unknown = await setLabels(url);
    setStatus(unknown ? `${file.name}: ${unknown} pixels are not legend colours; paint over them before Draw`
                      : `loaded ${file.name}`, unknown > 0);
  } catch (err) {
    setStatus(`${file.name}: ${err.message}`, true);
  } finally {
    URL.revokeObjectURL(url);
    event.target.value = "";
  }
}

// ---- Draw and history ------------------------------------------------------------------------
function occupancyPng() {
  const { width: w, height: h } = strokesCanvas;
  const src = sctx.getImageData(0, 0, w, h).data;
  const c = document.createElement("canvas");
  c.width = w;
  c.height = h;
  const ctx = c.getContext("2d");
  const out = ctx.createImageData(w, h);
  let count = 0;
  for (let p = 0; p < src.length; p += 4) {
    const v = src[p + 3] > 0 ? 255 : 0;
    count += v ? 1 : 0;
    out.data[p] = out.data[p + 1] = out.data[p + 2] = v;
    out.data[p + 3] = 255;
  }
  ctx.putImageData(out, 0, 0);
  return count ? c.toDataURL("image/png") : null;
}

async function draw() {
  if (state.busy) return;
  state.busy = true;
  $("draw").disabled = true;
  setStatus("drawing...");
  const labels = labelsCanvas.toDataURL("image/png");
  const strokes = strokesCanvas.toDataURL("image/png");
  const occupancy = occupancyPng();
  try {
    const response = await fetch("/api/draw", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ labels, strokes: occupancy ? strokes : null, occupancy }),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
    state.history.push({ result: "data:image/png;base64," + answer.image, labels, strokes,
                         seconds: answer.seconds });
    showResult(state.history.length - 1);
    setStatus(`drawn in ${answer.seconds.toFixed(3)} s`);
  } catch (err) {
    setStatus(`Draw failed: ${err.message}`, true);
  } finally {
    state.busy = false;
    $("draw").disabled = false;
  }
}

function showResult(i) {
  state.current = i;
  const entry = state.history[i];
  const result = $("result");
  result.src = entry.result;
  result.hidden = false;
  $("result-empty").hidden = true;
  result.dataset.index = i;
  result.style.width = labelsCanvas.width * state.zoom + "px";
  $("result-time").textContent = `image ${i + 1} of ${state.history.length}: ${entry.seconds.toFixed(3)} s`;
  $("download").href = entry.result;
  $("download").hidden = false;
  $("back").disabled = i === 0;
  renderHistory();
}

function renderHistory() {
  const ol = $("history");
  ol.innerHTML = "";
  state.history.forEach((entry, i) => {
    const li = document.createElement("li");
    li.classList.toggle("current", i === state.current);
    const img = document.createElement("img");
    img.src = entry.result;
    img.alt = `image ${i + 1}`;
    img.title = `image ${i + 1}: click to restore its labels and strokes`;
    img.addEventListener("click", () => restore(i));
    li.append(img);
    ol.append(li);
  });
}

async function restore(i) {
  const entry = state.history[i];
  try {
    await setLabels(entry.labels, true);
    drawOnto(sctx, await loadImage(entry.strokes));
    showResult(i);
    setStatus(`restored the labels and strokes of image ${i + 1}`);
  } catch (err) {
    setStatus(`could not restore image ${i + 1}: ${err.message}`, true);
  }
}

function back() {
  if (state.current > 0) showResult(state.current - 1);
}

// ---- start -----------------------------------------------------------------------------------
async function start() {
  const info = await (await fetch("/api/labels")).json();
  state.legend = info.labels;
  const [h, w] = info.size;
  // The largest zoom that shows the model's canvas in about 512 screen pixels (4x for 128).
  state.zoom = ZOOMS.filter((z) => z * Math.max(w, h) <= 512).pop() || ZOOMS[0];
  resizeCanvases(w, h);
  const sky = hex(state.legend[0].colour), ground = hex(state.legend[Math.min(5, state.legend.length - 1)].colour);
  lctx.fillStyle = sky;
  lctx.fillRect(0, 0, w, Math.floor(h / 2));
  lctx.fillStyle = ground;
  lctx.fillRect(0, Math.floor(h / 2), w, h - Math.floor(h / 2));
  buildLegend();
  buildPalette();
  const templates = (await (await fetch("/api/templates")).json()).templates;
  for (const t of templates) $("templates").append(new Option(t, t));

  const stack = $("stack");
  stack.addEventListener("pointerdown", onPointerDown);
  stack.addEventListener("pointermove", onPointerMove);
  stack.addEventListener("pointerup", onPointerUp);
  stack.addEventListener("pointercancel", onPointerUp);
  for (const b of document.querySelectorAll("button.mode")) b.addEventListener("click", () => setMode(b.dataset.mode));
  for (const b of document.querySelectorAll("button.tool")) b.addEventListener("click", () => setTool(b.dataset.tool));
  $("zoom-in").addEventListener("click", () => zoomBy(1));
  $("zoom-out").addEventListener("click", () => zoomBy(-1));
  $("clear-strokes").addEventListener("click", () => sctx.clearRect(0, 0, strokesCanvas.width, strokesCanvas.height));
  $("load-template").addEventListener("click", useTemplate);
  $("save-labels").addEventListener("click", () => { $("save-labels").href = labelsCanvas.toDataURL("image/png"); });
  $("load-labels").addEventListener("change", loadLabelsFile);
  $("draw").addEventListener("click", draw);
  $("back").addEventListener("click", back);
  setMode("label");
  document.body.dataset.ready = "1";
  setStatus("ready");
}

start().catch((err) => setStatus(`could not start: ${err.message}`, true));
