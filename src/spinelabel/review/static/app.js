// spinelabel review page: worklist, slice viewer, label corrections. No libraries, no network but this server.
"use strict";

const $ = (id) => document.getElementById(id);
// Slices farther than this from a label's own slice show it faded.
const NEAR_SLICES = 1.5;
// Zoom step of the +/- keys and ctrl+wheel.
const ZOOM_STEP = 0.25;
// Steps of the window and level sliders over the image's value range.
const WL_STEPS = 1000;
// The server's answer to names out of head-to-foot order: the reviewer may save them as they are with a second press.
const OUT_OF_ORDER = 422;

const state = {
  order: [], current: null, meta: null, slice: 0, zoom: 1, scale: 1,
  slices: new Map(), work: new Map(), selected: null, adding: false, drag: null, saves: 0, saving: false,
  refocusing: false,
};

async function api(path, options) {
  const response = await fetch(path, options);
  const type = response.headers.get("Content-Type") || "";
  if (!response.ok) {
    const body = type.startsWith("application/json") ? await response.json() : { error: response.statusText };
    const error = new Error(body.error || response.statusText);
    error.status = response.status;
    throw error;
  }
  return type.startsWith("application/json") ? response.json() : response.arrayBuffer();
}

function message(text, isError) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

// ---------------------------------------------------------------- worklist

async function loadWorklist(preloaded) {
  const list = preloaded || await api("/api/worklist");
  state.order = list.scans;
  $("progress").textContent = `${list.reviewed} of ${list.total} reviewed`;
  const ol = $("worklist");
  ol.replaceChildren();
  for (const entry of list.scans) {
    const li = document.createElement("li");
    li.dataset.index = entry.index;
    li.dataset.status = entry.status;
    if (entry.index === state.current) li.classList.add("current");
    const flags = entry.n_labels ? `min ${entry.min_confidence.toFixed(2)}` : "no labels";
    const count = entry.count_warned ? " · check the count" : "";
    const warn = entry.n_warnings ? ` · ${entry.n_warnings} warning(s)${count}` : "";
    li.innerHTML = `<span class="name"></span> <span class="status ${entry.status}">${entry.status}</span>` +
      `<div class="flags">${entry.n_labels} labels · ${flags}${warn}</div>`;
    li.querySelector(".name").textContent = entry.name;
    li.addEventListener("click", () => show(entry.index));
    li.tabIndex = 0; // Tab reaches every scan; Enter or Space opens it
    li.setAttribute("role", "button");
    li.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); show(entry.index); }
    });
    ol.appendChild(li);
  }
  return list;
}

function neighbour(step) {
  const i = state.order.findIndex((e) => e.index === state.current);
  const j = i + step;
  return j >= 0 && j < state.order.length ? state.order[j].index : null;
}

// ---------------------------------------------------------------- scan

function workOf(index, meta) {
  if (!state.work.has(index)) {
    state.work.set(index, { labels: meta.labels.map((l) => ({ ...l })), ops: [], version: meta.version });
  }
  const work = state.work.get(index);
  work.keepOrder = false; // the order is confirmed again on each visit
  return work;
}

async function openScan(index, preloaded) {
  const meta = preloaded || await api(`/api/scans/${index}/meta`);
  state.current = index;
  state.meta = meta;
  state.slices = new Map();
  state.selected = null;
  state.adding = false;
  workOf(index, meta);
  const [lo, hi] = meta.value_range;
  for (const [id, min, value] of [["window", (hi - lo) / WL_STEPS, meta.window[1]], ["level", lo, meta.window[0]]]) {
    const el = $(id);
    el.min = min; el.max = id === "window" ? hi - lo : hi; el.step = (hi - lo) / WL_STEPS; el.value = value;
  }
  $("slice").max = meta.shape[0] - 1;
  $("scan-name").textContent = meta.name;
  fillSelect($("rename-to"), meta.levels);
  fillSelect($("add-name"), meta.levels);
  const ul = $("warnings");
  ul.replaceChildren(...meta.warnings.map((w) => {
    const li = document.createElement("li");
    li.dataset.concern = w.concern;
    li.textContent = `${w.text} [${w.code}]`;
    return li;
  }));
  for (const li of $("worklist").children) li.classList.toggle("current", Number(li.dataset.index) === index);
  await showSlice(meta.start_slice);
  document.body.dataset.scan = meta.name;
  prefetch(index);
}

// Open a scan, or say on the page why it cannot be (an unreadable image, labels of another scan).
async function show(index) {
  try {
    await openScan(index);
  } catch (error) {
    message(error.message, true);
  }
}

function fillSelect(select, levels) {
  if (select.options.length === levels.length) return;
  select.replaceChildren(...levels.map((name) => new Option(name, name)));
}

async function sliceData(index, k) {
  const key = `${index}/${k}`;
  if (!state.slices.has(key)) state.slices.set(key, api(`/api/scans/${index}/slices/${k}`).then((b) => new Uint16Array(b)));
  return state.slices.get(key);
}

async function prefetch(index) {
  for (let k = 0; k < state.meta.shape[0] && state.current === index; k++) await sliceData(index, k);
}

async function showSlice(k) {
  const meta = state.meta;
  k = Math.max(0, Math.min(meta.shape[0] - 1, Math.round(k)));
  state.slice = k;
  $("slice").value = k;
  $("slice-text").textContent = `${k + 1} / ${meta.shape[0]}`;
  const pixels = await sliceData(state.current, k);
  if (state.slice === k) draw(pixels);
}

function draw(pixels) {
  const meta = state.meta;
  const [, rows, cols] = meta.shape;
  const [, rowMm, colMm] = meta.spacing_mm;
  const view = $("viewport");
  const fit = Math.min(view.clientWidth / (cols * colMm), view.clientHeight / (rows * rowMm));
  state.scale = fit * state.zoom;
  const width = Math.max(1, Math.round(cols * colMm * state.scale));
  const height = Math.max(1, Math.round(rows * rowMm * state.scale));
  const off = new OffscreenCanvas(cols, rows);
  const octx = off.getContext("2d");
  const image = octx.createImageData(cols, rows);
  const [lo, hi] = meta.value_range;
  const width_ = Number($("window").value), level = Number($("level").value);
  const a = ((hi - lo) / 65535) * (255 / width_), b = ((lo - (level - width_ / 2)) * 255) / width_;
  for (let i = 0; i < pixels.length; i++) {
    const g = pixels[i] * a + b;
    const q = 4 * i;
    image.data[q] = image.data[q + 1] = image.data[q + 2] = g < 0 ? 0 : g > 255 ? 255 : g;
    image.data[q + 3] = 255;
  }
  octx.putImageData(image, 0, 0);
  const canvas = $("image");
  canvas.width = width; canvas.height = height;
  $("stage").style.width = `${width}px`; $("stage").style.height = `${height}px`;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(off, 0, 0, width, height);
  drawLabels();
  if (!document.body.dataset.ready) {
    window.spinelabelReadyMs = performance.now();
    document.body.dataset.ready = "1";
  }
}

// ---------------------------------------------------------------- labels

function toScreen(label) {
  const [, rowMm, colMm] = state.meta.spacing_mm;
  return [(label.col + 0.5) * colMm * state.scale, (label.row + 0.5) * rowMm * state.scale];
}

function fromScreen(x, y) {
  // a label dragged (or placed) past the image's edge stays on it: a point outside would block every save
  const [, rowMm, colMm] = state.meta.spacing_mm;
  const [, rows, cols] = state.meta.shape;
  const inside = (v, n) => Math.min(Math.max(v, 0), n - 1);
  return { row: inside(y / (rowMm * state.scale) - 0.5, rows), col: inside(x / (colMm * state.scale) - 0.5, cols) };
}

function drawLabels() {
  const work = state.work.get(state.current);
  const layer = $("labels");
  const focused = layer.contains(document.activeElement) ? document.activeElement.dataset.label : null;
  layer.replaceChildren();
  for (const label of work.labels) {
    const div = document.createElement("div");
    div.className = "marker";
    div.dataset.label = label.label;
    div.classList.toggle("low", !label.edited && label.low);
    div.classList.toggle("warned", !label.edited && label.warned);
    div.classList.toggle("edited", Boolean(label.edited));
    div.classList.toggle("far", Math.abs(label.slice - state.slice) > NEAR_SLICES);
    div.classList.toggle("selected", label.label === state.selected);
    div.innerHTML = '<span class="dot"></span><span class="name"></span>';
    div.querySelector(".name").textContent = `${label.label} ${label.confidence.toFixed(2)}`;
    const [x, y] = toScreen(label);
    div.style.left = `${x}px`; div.style.top = `${y}px`;
    div.addEventListener("mousedown", (event) => startDrag(event, label, div));
    div.tabIndex = 0; // Tab reaches every label and selects it: then rename, Delete
    div.setAttribute("role", "button");
    div.setAttribute("aria-label", `${label.label}, confidence ${label.confidence.toFixed(2)}`);
    div.addEventListener("focus", () => selectByKeyboard(label));
    layer.appendChild(div);
    if (label.label === focused) { // redrawn: the focus stays on it, without selecting it again
      state.refocusing = true;
      div.focus({ preventScroll: true });
      state.refocusing = false;
    }
  }
  $("selected").textContent = state.selected || "none";
  updateRename();
  const n = work.ops.length;
  $("pending").textContent = n ? `${n} unsaved change(s): press a to save` : "no unsaved changes";
  $("pending").className = n ? "dirty" : "";
  const entry = state.order.find((e) => e.index === state.current);
  const status = n ? "edited" : entry ? entry.status : "";
  $("scan-status").textContent = status;
  $("scan-status").className = `status ${status}`;
}

function record(op) {
  const work = state.work.get(state.current);
  work.ops.push(op);
  work.keepOrder = false; // an edit after the warning: checked again
  drawLabels();
}

function selectByKeyboard(label) {
  if (state.refocusing || state.selected === label.label) return;
  state.selected = label.label;
  $("rename-to").value = label.label;
  drawLabels();
}

function startDrag(event, label, div) {
  event.preventDefault();
  event.stopPropagation();
  state.selected = label.label;
  $("rename-to").value = label.label;
  div.focus({ preventScroll: true }); // the keyboard's focus follows the mouse's choice
  state.drag = { label, div, x0: event.clientX, y0: event.clientY, start: toScreen(label), moved: false };
  drawLabels();
}

function onMouseMove(event) {
  const drag = state.drag;
  if (!drag) return;
  const dx = event.clientX - drag.x0, dy = event.clientY - drag.y0;
  drag.moved = drag.moved || Math.abs(dx) + Math.abs(dy) > 2;
  const marker = $("labels").querySelector(`[data-label="${drag.label.label}"]`);
  if (marker) { marker.style.left = `${drag.start[0] + dx}px`; marker.style.top = `${drag.start[1] + dy}px`; }
}

function onMouseUp(event) {
  const drag = state.drag;
  state.drag = null;
  if (!drag || !drag.moved) return;
  const pos = fromScreen(drag.start[0] + event.clientX - drag.x0, drag.start[1] + event.clientY - drag.y0);
  Object.assign(drag.label, pos, { slice: state.slice, confidence: 1, edited: true });
  record({ op: "move", label: drag.label.label, slice: state.slice, row: pos.row, col: pos.col });
}

// Rename is offered only for a selected label and another name: a rename to its own name changes nothing.
function updateRename() {
  $("rename").disabled = !state.selected || $("rename-to").value === state.selected;
}

function renameSelected() {
  const work = state.work.get(state.current);
  const label = work.labels.find((l) => l.label === state.selected);
  const to = $("rename-to").value;
  if (!label) return message("select a label first (click it)", true);
  if (to === label.label) return;
  if (work.labels.some((l) => l.label === to && l !== label)) return message(`${to} is already labeled`, true);
  record({ op: "rename", label: label.label, to });
  Object.assign(label, { label: to, confidence: 1, edited: true });
  state.selected = to;
  message("");
  drawLabels();
}

function deleteSelected() {
  const work = state.work.get(state.current);
  const i = work.labels.findIndex((l) => l.label === state.selected);
  if (i < 0) return message("select a label first (click it)", true);
  work.labels.splice(i, 1);
  record({ op: "delete", label: state.selected });
  state.selected = null;
  drawLabels();
}

function startAdd() {
  const name = $("add-name").value;
  if (state.work.get(state.current).labels.some((l) => l.label === name)) return message(`${name} is already labeled`, true);
  state.adding = true;
  $("stage").classList.add("adding");
  message(`click on the image to place ${name}`);
}

function onStageClick(event) {
  if (!state.adding) return;
  state.adding = false;
  $("stage").classList.remove("adding");
  const box = $("image").getBoundingClientRect();
  const pos = fromScreen(event.clientX - box.left, event.clientY - box.top);
  const name = $("add-name").value;
  state.work.get(state.current).labels.push({ label: name, slice: state.slice, ...pos, confidence: 1, edited: true });
  state.selected = name;
  message("");
  record({ op: "add", label: name, slice: state.slice, row: pos.row, col: pos.col });
}

// ---------------------------------------------------------------- saving and moving on

async function accept() {
  // one save at a time, until the next scan is shown: a second press (a held key, a double click) must not
  // accept a scan nobody has looked at
  if (state.saving) return;
  const index = state.current;
  const work = state.work.get(index);
  if (!work) return;
  state.saving = true;
  try {
    try {
      await api(`/api/scans/${index}/review`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ ops: work.ops, version: work.version, keep_order: Boolean(work.keepOrder) }),
      });
    } catch (error) {
      if (error.status === OUT_OF_ORDER) {
        work.keepOrder = true;
        return message(`not saved: ${error.message}; correct them, or press a again to save them as they are`, true);
      }
      return message(`not saved: ${error.message}`, true);
    }
    state.work.delete(index);
    state.saves += 1;
    document.body.dataset.saved = String(state.saves);
    const list = await loadWorklist();
    message(`${state.order.find((e) => e.index === index).name} saved`);
    const next = list.scans.find((e) => e.status === "unreviewed" && e.index !== index);
    await show(next ? next.index : index);
  } finally {
    state.saving = false;
  }
}

async function go(step) {
  const index = neighbour(step);
  if (index !== null) await show(index);
}

function onKey(event) {
  if (event.target.tagName === "SELECT" || !state.meta) return;
  // a held key repeats, and Ctrl/Alt/Meta combinations belong to the browser (Ctrl+A accepted a scan)
  if (event.ctrlKey || event.altKey || event.metaKey) return;
  if (event.repeat && (event.key === "a" || event.key === "Delete" || event.key === "Backspace")) return;
  const actions = {
    a: accept, n: () => go(1), p: () => go(-1),
    ArrowDown: () => showSlice(state.slice + 1), ArrowUp: () => showSlice(state.slice - 1),
    "+": () => setZoom(state.zoom + ZOOM_STEP), "-": () => setZoom(state.zoom - ZOOM_STEP),
    Delete: deleteSelected, Backspace: deleteSelected,
  };
  const action = actions[event.key];
  if (action) { event.preventDefault(); action(); }
}

function setZoom(z) {
  state.zoom = Math.max(Number($("zoom").min), Math.min(Number($("zoom").max), z));
  $("zoom").value = state.zoom;
  showSlice(state.slice);
}

function onWheel(event) {
  if (!state.meta) return;
  event.preventDefault();
  if (event.ctrlKey) setZoom(state.zoom - Math.sign(event.deltaY) * ZOOM_STEP);
  else showSlice(state.slice + Math.sign(event.deltaY));
}

function wire() {
  $("slice").addEventListener("input", (e) => showSlice(Number(e.target.value)));
  for (const id of ["window", "level"]) $(id).addEventListener("input", () => showSlice(state.slice));
  $("zoom").addEventListener("input", (e) => setZoom(Number(e.target.value)));
  $("prev").addEventListener("click", () => go(-1));
  $("next").addEventListener("click", () => go(1));
  $("accept").addEventListener("click", accept);
  $("rename").addEventListener("click", renameSelected);
  $("rename-to").addEventListener("change", updateRename);
  $("delete").addEventListener("click", deleteSelected);
  $("add").addEventListener("click", startAdd);
  $("stage").addEventListener("click", onStageClick);
  $("viewport").addEventListener("wheel", onWheel, { passive: false });
  window.addEventListener("mousemove", onMouseMove);
  window.addEventListener("mouseup", onMouseUp);
  window.addEventListener("keydown", onKey);
  window.addEventListener("resize", () => state.meta && showSlice(state.slice));
  window.addEventListener("beforeunload", (event) => {
    if ([...state.work.values()].some((w) => w.ops.length)) event.preventDefault();
  });
}

async function main() {
  wire();
  try {
    const boot = JSON.parse($("boot").textContent);  // the server's first data, in the page itself
    const list = await loadWorklist(boot && boot.worklist);
    if (list.scans.length) await openScan(list.scans[0].index, boot && boot.meta);
  } catch (error) {
    message(error.message, true);
  }
}

main();
