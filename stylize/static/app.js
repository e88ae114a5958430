// The page of `python -m stylize.web`: it sends the chosen images and the settings to
// POST /api/stylize, shows a quick preview while the settings change, then the full size.
"use strict";

const PREVIEW = 256; // long side of the quick preview, px
const files = {}; // form field (content, style, style2) -> File
let version = 0; // bumped by every change: a result is final only for the latest settings
let running = false;
const $ = (id) => document.getElementById(id);

const INPUTS = [["content", "Photo", "photo"], ["style", "Painting", "painting"]]; // field, caption, noun

async function init() {
  addInputPanels();
  const info = await (await fetch("/api/info")).json();
  fillSizes(info.min_size, info.limits.max_size);
  for (const drop of document.querySelectorAll("label.drop")) watchDrop(drop);
  for (const box of document.querySelectorAll(".examples")) showExamples(box, info.examples[box.dataset.kind]);
  for (const id of ["alpha", "style2_weight"]) {
    $(id).addEventListener("input", () => {
      $(`${id}-value`).textContent = Number($(id).value).toFixed(2);
      changed();
    });
  }
  for (const id of ["preserve_color", "refine", "size", "format"]) $(id).addEventListener("change", changed);
  $("style2-remove").addEventListener("click", () => setFile("style2", null));
}

function addInputPanels() {
  const result = document.querySelector(".panels .panel"); // the inputs go before the result
  for (const [field, caption, noun] of INPUTS) {
    const panel = $("input-panel").content.firstElementChild.cloneNode(true);
    panel.querySelector("figcaption").textContent = caption;
    const drop = panel.querySelector("label.drop");
    drop.dataset.field = field;
    drop.querySelector("input").id = `${field}-file`;
    drop.querySelector("img").alt = `the ${noun}`;
    drop.querySelector(".hint").textContent = `Drop a ${noun} here, or click to choose one`;
    Object.assign(panel.querySelector(".examples").dataset, { field, kind: field });
    result.before(panel);
  }
}

function fillSizes(min, max) {
  // the server never enlarges: asking for its limit gives the photo's own size, up to the limit
  $("size").add(new Option(`the photo's size (up to ${max} px)`, max, true, true));
  for (const s of [256, 512, 768, 1024, 1536, 2048].filter((s) => s >= min && s < max)) {
    $("size").add(new Option(`${s} px`, s));
  }
}

function watchDrop(drop) {
  const field = drop.dataset.field;
  const input = drop.querySelector("input");
  input.addEventListener("change", () => input.files.length && setFile(field, input.files[0]));
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) setFile(field, e.dataTransfer.files[0]);
  });
}

function showExamples(box, names) {
  for (const name of names) {
    const img = new Image();
    img.src = `/examples/${box.dataset.kind}/${encodeURIComponent(name)}`;
    img.alt = name;
    const button = document.createElement("button");
    button.type = "button";
    button.title = name;
    button.append(img);
    button.addEventListener("click", async () => {
      const blob = await (await fetch(img.src)).blob();
      setFile(box.dataset.field, new File([blob], name, { type: blob.type }));
    });
    box.append(button);
  }
}

function setFile(field, file) {
  const drop = document.querySelector(`label.drop[data-field="${field}"]`);
  const img = drop.querySelector("img");
  if (img.src) URL.revokeObjectURL(img.src);
  if (file) {
    files[field] = file;
    img.src = URL.createObjectURL(file);
  } else {
    delete files[field];
    img.removeAttribute("src");
  }
  img.hidden = !file;
  drop.querySelector(".hint").hidden = !!file;
  drop.querySelector("input").value = ""; // choosing the same file again is a change too
  if (field === "style2") {
    $("style2_weight").disabled = !file;
    $("style2-remove").disabled = !file;
  }
  changed();
}

function changed() {
  version++;
  // what is shown is no longer what the settings ask for: say so, and offer no download of it
  $("result").classList.add("stale");
  $("download").classList.add("disabled");
  $("download").removeAttribute("href");
  if (!running) loop();
}

// One request at a time: while one runs, changes pile up into the next (the latest settings).
async function loop() {
  running = true;
  let done = -1;
  while (done !== version && files.content && files.style) {
    const v = version;
    const size = Number($("size").value);
    if (size > PREVIEW && !(await render(PREVIEW, "jpeg", v, false))) break;
    if (v !== version) continue; // the settings moved on: preview those first
    if (!(await render(size, $("format").value, v, true))) break;
    done = v;
  }
  running = false;
}

async function render(size, format, v, final) {
  const settings = {
    alpha: $("alpha").value,
    preserve_color: $("preserve_color").value,
    refine: $("refine").value,
    style2_weight: $("style2_weight").value,
    size,
    format,
  };
  const form = new FormData();
  for (const [field, file] of Object.entries(files)) form.append(field, file);
  for (const [name, value] of Object.entries(settings)) form.append(name, value);
  status(final ? "Full size…" : "Preview…", true);
  const start = performance.now();
  let response;
  try {
    response = await fetch("/api/stylize", { method: "POST", body: form });
  } catch (e) {
    return fail(`The server cannot be reached (${e.message}): is stylize-adain-web still running?`);
  }
  if (response.status === 503) {
    const wait = Number(response.headers.get("Retry-After")) || 1;
    status(`The server is busy; trying again in ${wait} s…`, true);
    await new Promise((resolve) => setTimeout(resolve, wait * 1000));
    return v === version ? render(size, format, v, final) : true;
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    return fail(body.error || `${response.status} ${response.statusText}`);
  }
  show(await response.blob(), settings, v === version, final && v === version, performance.now() - start);
  return true;
}

function show(blob, settings, current, final, ms) {
  const img = $("result");
  const link = $("download");
  const old = [img.src, link.href];
  img.src = URL.createObjectURL(blob);
  img.hidden = false;
  img.classList.toggle("stale", !current);
  img.parentElement.querySelector(".hint").hidden = true;
  img.onload = () => {
    $("result-size").textContent = `${img.naturalWidth} × ${img.naturalHeight}`;
    if (final) link.download = downloadName(settings.format, img);
    Object.assign(img.dataset, { alpha: settings.alpha, size: settings.size, final: String(final) });
  };
  if (final) link.href = img.src;
  link.classList.toggle("disabled", !final);
  for (const url of old) if (url && url !== img.src && url !== link.href) URL.revokeObjectURL(url);
  $("error").hidden = true;
  status(final ? `Done in ${(ms / 1000).toFixed(1)} s` : "Preview; the full size follows…", !final);
}

function fail(reason) {
  $("error").textContent = reason;
  $("error").hidden = false;
  const img = $("result"); // no result of other settings stays on show, nor for download
  img.hidden = true;
  img.removeAttribute("src");
  img.parentElement.querySelector(".hint").hidden = false;
  $("result-size").textContent = "";
  status("Failed");
  return false;
}

function status(text, busy = false) {
  $("status").textContent = text;
  $("status").classList.toggle("busy", busy);
}

// photo_stylized_painting.png, with the size when it is not the photo's: photo_stylized_painting_512x341.png
function downloadName(format, result) {
  const photo = document.querySelector('label.drop[data-field="content"] img');
  const [w, h] = [result.naturalWidth, result.naturalHeight];
  const size = w === photo.naturalWidth && h === photo.naturalHeight ? "" : `_${w}x${h}`;
  return `${stem(files.content.name)}_stylized_${stem(files.style.name)}${size}.${format === "jpeg" ? "jpg" : "png"}`;
}

function stem(name) {
  return name.replace(/\.[^.]*$/, "") || "image";
}

init();
