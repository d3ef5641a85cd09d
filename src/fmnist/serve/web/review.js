// The review page: one suspect at a time, strongest first; a decision is POSTed to /review/decision, which
// writes the audit's reviews.json, then the next unreviewed suspect is shown. Keys: R right, S the suggested
// class, 0-9 that class, U unsure, N next unreviewed, arrows previous / next.
"use strict";

const PAGE = 200;
const state = { rows: [], total: 0, reviewed: 0, classes: [], at: 0 };

const $ = (id) => document.getElementById(id);

async function fetchRows() {
  const response = await fetch(`/review/suspects?offset=${state.rows.length}&limit=${PAGE}`);
  const page = await response.json();
  if (!response.ok) throw new Error(page.detail || response.statusText);
  state.rows.push(...page.rows);
  Object.assign(state, { total: page.total, reviewed: page.reviewed, classes: page.classes });
}

async function show(at) {
  while (at >= state.rows.length && state.rows.length < state.total) await fetchRows();
  if (at < 0 || at >= state.rows.length) return;
  state.at = at;
  const row = state.rows[at];
  $("image").src = "data:image/png;base64," + row.image_png;
  $("position").textContent = `${row.file} image #${row.index} · suspect ${(at + 1).toLocaleString("en")} of ${state.total.toLocaleString("en")} · label quality ${row.score.toFixed(4)}`;
  $("given").textContent = state.classes[row.given];
  $("suggested").textContent = state.classes[row.suggested];
  $("suggested-name").textContent = state.classes[row.suggested];
  $("status").textContent = row.review ? describe(row.review) : "";
  $("progress").textContent = `${state.reviewed.toLocaleString("en")} of ${state.total.toLocaleString("en")} reviewed`;
  $("card").hidden = false;
}

function describe(review) {
  const what = review.decision === "relabel" ? `should be ${state.classes[review.label]}`
    : review.decision === "right" ? "label is right" : "unsure";
  return `reviewed: ${what} (${review.reviewer}, ${review.time})`;
}

async function decide(decision, label = null) {
  const reviewer = $("reviewer").value.trim();
  if (!reviewer) {
    $("message").textContent = "Type your name as reviewer first.";
    $("reviewer").focus();
    return;
  }
  localStorage.setItem("fmnist-reviewer", reviewer);
  const row = state.rows[state.at];
  const response = await fetch("/review/decision", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ file: row.file, index: row.index, decision, label, reviewer }),
  });
  const answer = await response.json();
  if (!response.ok) {
    $("message").textContent = answer.detail || response.statusText;
    return;
  }
  $("message").textContent = "";
  row.review = answer.saved;
  state.reviewed = answer.reviewed;
  await nextOpen();
}

async function nextOpen() {
  let at = state.at + 1;
  while (true) {
    while (at >= state.rows.length && state.rows.length < state.total) await fetchRows();
    if (at >= state.rows.length || !state.rows[at].review) break;
    at += 1;
  }
  await show(Math.min(at, state.total - 1));
}

function classButtons() {
  state.classes.forEach((name, number) => {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.label = number;
    button.textContent = `${name} (${number})`;
    button.addEventListener("click", () => decide("relabel", number));
    $("classes").append(button);
  });
}

function keys(event) {
  if (event.target === $("reviewer") || event.ctrlKey || event.metaKey || event.altKey) return;
  const row = state.rows[state.at];
  const key = event.key.toLowerCase();
  if (key === "r") decide("right");
  else if (key === "s") decide("relabel", row.suggested);
  else if (key === "u") decide("unsure");
  else if (key === "n") nextOpen();
  else if (/^[0-9]$/.test(key)) decide("relabel", Number(key));
  else if (event.key === "ArrowLeft") show(state.at - 1);
  else if (event.key === "ArrowRight") show(state.at + 1);
  else return;
  event.preventDefault();
}

async function start() {
  $("reviewer").value = localStorage.getItem("fmnist-reviewer") || "";
  try {
    await fetchRows();
  } catch (error) {
    $("message").textContent = `Cannot load the suspects: ${error.message}`;
    return;
  }
  if (!state.total) {
    $("message").textContent = "The audit found no suspects.";
    return;
  }
  classButtons();
  $("right").addEventListener("click", () => decide("right"));
  $("take-suggested").addEventListener("click", () => decide("relabel", state.rows[state.at].suggested));
  $("unsure").addEventListener("click", () => decide("unsure"));
  $("prev").addEventListener("click", () => show(state.at - 1));
  $("next").addEventListener("click", () => show(state.at + 1));
  $("next-open").addEventListener("click", nextOpen);
  document.addEventListener("keydown", keys);
  state.at = -1;
  await nextOpen();
}

start();
