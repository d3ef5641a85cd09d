// The page's only script: fill the model selector, send the chosen or dropped images to /predict, show each answer
// (with its heat map when the box asks for one).
"use strict";

const MAX_FILES = 16;  // per request, as the server accepts

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// --- API key (serve --api-key-file): asked for once, kept for this tab only (sessionStorage), sent as Bearer.
const KEY_ITEM = "fmnist-api-key";

async function authorized(url, options = {}) {
  const key = sessionStorage.getItem(KEY_ITEM);
  const headers = key ? { Authorization: `Bearer ${key}` } : {};
  const response = await fetch(url, { ...options, headers: { ...(options.headers || {}), ...headers } });
  if (response.status === 401) {
    sessionStorage.removeItem(KEY_ITEM);
    document.getElementById("key-form").hidden = false;
  }
  return response;
}

function askForKey() {
  const form = document.getElementById("key-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_ITEM, document.getElementById("api-key").value.trim());
    document.getElementById("api-key").value = "";
    form.hidden = true;
    showModels();
  });
}
// --- end of the API key

function showModels() {
  loadModels().catch((error) => document.getElementById("status").textContent = `cannot list the models (${error})`);
}

async function loadModels() {
  const select = document.getElementById("model");
  const response = await authorized("/models");
  if (response.status === 401) return;  // the key form is shown; it loads the models once a key is given
  const info = await response.json();
  select.replaceChildren();
  for (const model of info.models) {
    const option = element("option", "", `${model.name} (test ${(100 * model.test_accuracy).toFixed(1)}%)`);
    option.value = model.name;
    option.selected = model.default;
    select.append(option);
  }
}

function showPrediction(prediction, file, model, box) {
  const card = document.getElementById("result").content.firstElementChild.cloneNode(true);
  card.querySelector(".original").src = URL.createObjectURL(file);
  card.querySelector(".preview").src = "data:image/png;base64," + prediction.image_png;
  if (prediction.cutout_png) {  // the photo was segmented: show what was cut out of its background
    card.querySelector(".cutout").src = "data:image/png;base64," + prediction.cutout_png;
    card.querySelector(".cutout-figure").hidden = false;
  }
  if (box) card.dataset.box = box.join(",");  // the box this answer was given for, in the photo's pixels
  letDrawBox(card, file, box);
  if (prediction.heat_png) {  // asked for with the heat-map box: which pixels made the model decide
    card.querySelector(".heat").src = "data:image/png;base64," + prediction.heat_png;
    card.querySelector(".heat-figure").hidden = false;
  }
  card.querySelector(".class-name").textContent = prediction.unknown ? "Unknown" : prediction.class;
  card.querySelector(".probability").textContent = prediction.unknown ? "" : (100 * prediction.probability).toFixed(1) + "%";
  if (prediction.unknown) {  // not like any class: say so, and grey the closest classes
    card.classList.add("unknown");
    card.querySelector(".unknown-note").hidden = false;
  }
  card.querySelector(".file").textContent = prediction.file;
  card.querySelector(".model-used").textContent = model;
  const bars = card.querySelector(".bars");
  for (const ranked of prediction.top_k) {
    const row = element("li");
    const bar = element("div", "bar");
    const fill = element("span");
    fill.style.width = (100 * ranked.probability).toFixed(1) + "%";
    bar.append(fill);
    row.append(element("span", "name", ranked.class), bar, element("span", "pct", (100 * ranked.probability).toFixed(1) + "%"));
    bars.append(row);
  }
  if (prediction.set) showSet(card.querySelector(".set"), prediction.set, prediction.coverage);
  return card;
}

// The prediction set in words: "Shirt or T-shirt/top — 95 % sure the answer is among these".
function showSet(node, names, coverage) {
  const level = `${+(100 * coverage).toPrecision(4)} %`;
  const joined = names.length === 1 ? names[0] : names.slice(0, -1).join(", ") + " or " + names[names.length - 1];
  const among = names.length === 1 ? "that this is the answer" : "the answer is among these";
  node.textContent = names.length ? `${joined} — ${level} sure ${among}` : `No class fits well enough to name at ${level}`;
  node.hidden = false;
}

// -- the box a person draws around the garment (mouse, pen and touch alike, through pointer events) ----------

function showBox(card, box) {  // box in the photo's own pixels -> the overlay, in the displayed image's
  const img = card.querySelector(".original");
  const overlay = card.querySelector(".box");
  const scale = img.clientWidth / img.naturalWidth;
  Object.assign(overlay.style, {
    left: `${box[0] * scale}px`, top: `${box[1] * scale}px`,
    width: `${(box[2] - box[0]) * scale}px`, height: `${(box[3] - box[1]) * scale}px`,
  });
  overlay.hidden = false;
}

function letDrawBox(card, file, box) {
  const photo = card.querySelector(".photo");
  const img = card.querySelector(".original");
  if (box) img.addEventListener("load", () => showBox(card, box), { once: true });
  let start = null;
  const point = (event) => {  // the pointer in the photo's own pixels, kept inside it
    const rect = img.getBoundingClientRect();
    const scale = img.naturalWidth / rect.width;
    const clamp = (v, high) => Math.round(Math.min(Math.max(v, 0), high));
    return [clamp((event.clientX - rect.left) * scale, img.naturalWidth), clamp((event.clientY - rect.top) * scale, img.naturalHeight)];
  };
  const current = (event) => {
    const [x, y] = point(event);
    return [Math.min(start[0], x), Math.min(start[1], y), Math.max(start[0], x), Math.max(start[1], y)];
  };
  photo.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    photo.setPointerCapture(event.pointerId);
    start = point(event);
  });
  photo.addEventListener("pointermove", (event) => { if (start) showBox(card, current(event)); });
  photo.addEventListener("pointerup", (event) => {
    if (!start) return;
    const drawn = current(event);
    start = null;
    if (drawn[2] - drawn[0] >= 4 && drawn[3] - drawn[1] >= 4) reclassify(card, file, drawn);
  });
}

async function reclassify(card, file, box) {  // the same photo again, with the box: the card shows the new answer
  const form = formFor([file]);
  form.append("box", box.join(","));
  try {
    const answer = await (await authorized("/predict", { method: "POST", body: form })).json();
    const prediction = (answer.predictions || [])[0];
    const failure = (answer.errors || [])[0];
    card.replaceWith(prediction ? showPrediction(prediction, file, answer.model, box)
      : showError(failure ? `${failure.file}: ${failure.error}` : answer.detail || "unexpected answer"));
  } catch (error) {
    card.replaceWith(showError(`the server did not answer (${error})`));
  }
}

function formFor(files) {
  const form = new FormData();
  files.forEach((file) => form.append("files", file, file.name));
  form.append("model", document.getElementById("model").value);
  form.append("top_k", document.getElementById("top-k").value);
  form.append("coverage", document.getElementById("coverage").value);
  if (document.getElementById("explain").checked) form.append("explain", "1");
  return form;
}

function showError(message) {
  const card = element("article", "result error");
  card.append(element("strong", "", "Not classified: "), element("span", "message", message));
  return card;
}

async function classify(files) {
  const results = document.getElementById("results");
  const status = document.getElementById("status");
  status.textContent = `classifying ${files.length} image${files.length === 1 ? "" : "s"}…`;
  for (let start = 0; start < files.length; start += MAX_FILES) {
    const group = files.slice(start, start + MAX_FILES);
    const form = formFor(group);
    let answer;
    try {
      const response = await authorized("/predict", { method: "POST", body: form });
      answer = await response.json();
    } catch (error) {
      results.prepend(showError(`the server did not answer (${error})`));
      continue;
    }
    const byName = new Map(group.map((file) => [file.name, file]));
    for (const prediction of answer.predictions || []) {
      results.prepend(showPrediction(prediction, byName.get(prediction.file) || group[0], answer.model));
    }
    for (const failure of answer.errors || []) results.prepend(showError(`${failure.file}: ${failure.error}`));
    if (!answer.predictions && !answer.errors) results.prepend(showError(answer.detail || "unexpected answer"));
  }
  status.textContent = "";
}

function setUp() {
  const drop = document.getElementById("drop");
  const input = document.getElementById("files");
  input.addEventListener("change", () => { classify([...input.files]); input.value = ""; });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    classify([...event.dataTransfer.files].filter((file) => file.type.startsWith("image/") || !file.type));
  });
  askForKey();
  showModels();
}

setUp();
