// The search page: every call goes to the gateway's own /v1/ API, with the
// key the user typed, which lives in this tab's sessionStorage only (it is
// gone when the tab closes and never reaches another tab or the disk's
// long-lived storage).
"use strict";

const KEY = "imgsearch.key";
const el = (id) => document.getElementById(id);
const media = document.body.dataset.media === "on";
// What is being searched: {image: File} or {like: {id, filepath}}.
let query = null;
let offset = 0;
let thumbs = [];

function authorization() {
  const key = sessionStorage.getItem(KEY);
  return key ? { Authorization: "Bearer " + key } : {};
}

// A call of the API: its JSON answer, or an Error naming the gRPC code.
async function call(path, init = {}) {
  const response = await fetch(path, {
    ...init,
    headers: { ...authorization(), ...(init.headers || {}) },
  });
  const text = await response.text();
  let body = null;
  try { body = JSON.parse(text); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    const e = body && body.error;
    throw new Error(e ? e.status + ": " + e.message : "HTTP " + response.status);
  }
  return body;
}

function say(text, error = false) {
  el("status").textContent = text;
  el("status").className = error ? "error" : "";
}

async function listCollections() {
  const select = el("collection");
  const chosen = select.value;
  try {
    const names = (await call("/v1/collections")).names || [];
    select.replaceChildren(...names.map((n) => new Option(n, n)));
    if (names.includes(chosen)) select.value = chosen;
    else if (names.includes("image_embeddings")) select.value = "image_embeddings";
    say(names.length ? "Drop an image to search " + select.value + "." : "No collections yet.");
  } catch (e) {
    select.replaceChildren();
    say("Listing collections: " + e.message, true);
  }
}

function number(id) {
  const v = el(id).value.trim();
  return v === "" ? null : Number(v);
}

function topK() { return Math.max(1, Math.min(1024, number("top-k") || 12)); }

// The search request for the current query and page.
function request() {
  const k = topK();
  const max = number("max-distance");
  if (query.image) {
    const form = new FormData();
    form.append("image", query.image, query.image.name || "query");
    form.append("top_k", String(k));
    form.append("offset", String(offset));
    if (max !== null) form.append("max_distance", String(max));
    return { method: "POST", body: form };
  }
  const body = { like: [{ id: query.like.id }], topK: k, offset };
  if (max !== null) body.maxDistance = max;
  return { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
}

async function search() {
  const collection = el("collection").value;
  if (!query) return;
  if (!collection) { say("Choose a collection first.", true); return; }
  document.body.dataset.state = "searching";
  say("Searching…");
  const started = performance.now();
  try {
    const answer = await call("/v1/collections/" + encodeURIComponent(collection) + ":search", request());
    const result = (answer.results || [])[0] || {};
    if (result.error) throw new Error(result.error.message || "the query failed");
    const hits = result.hits || [];
    show(collection, hits);
    const ms = (performance.now() - started).toFixed(0);
    const milvus = ((answer.searchSeconds || 0) * 1000).toFixed(1);
    const what = query.like ? "more like #" + query.like.id : "your image";
    say(hits.length + " hits for " + what + " in " + ms + " ms (Milvus " + milvus + " ms).");
    el("next").disabled = hits.length < topK();
    el("prev").disabled = offset === 0;
    el("page").textContent = "Page " + (Math.floor(offset / topK()) + 1);
    document.body.dataset.state = "done";
  } catch (e) {
    el("grid").replaceChildren();
    say(e.message, true);
    document.body.dataset.state = "error";
  }
  document.body.dataset.searches = String(Number(document.body.dataset.searches) + 1);
}

// A thumbnail of a stored image, fetched with the key (an <img src> could
// not carry it).
async function thumbnail(collection, filepath, into) {
  if (!media) return;
  try {
    const url = "/v1/collections/" + encodeURIComponent(collection) + "/media?filepath=" + encodeURIComponent(filepath);
    const response = await fetch(url, { headers: authorization() });
    if (!response.ok) return;
    const src = URL.createObjectURL(await response.blob());
    thumbs.push(src);
    const img = new Image();
    img.alt = filepath;
    img.src = src;
    into.replaceChildren(img);
  } catch (_) { /* the filepath stays */ }
}

function show(collection, hits) {
  thumbs.forEach((u) => URL.revokeObjectURL(u));
  thumbs = [];
  el("grid").replaceChildren(...hits.map((hit) => {
    const distance = hit.distance || 0;
    const card = document.createElement("button");
    card.type = "button";
    card.className = "hit";
    card.dataset.id = hit.id;
    card.dataset.filepath = hit.filepath;
    card.dataset.distance = String(distance);
    card.title = "More like this";
    const thumb = document.createElement("div");
    thumb.className = "thumb";
    const name = document.createElement("span");
    name.textContent = hit.filepath;
    thumb.append(name);
    const caption = document.createElement("div");
    caption.className = "caption";
    const d = document.createElement("b");
    // Squared L2: near 0 for the same image, thousands apart otherwise.
    d.textContent = "distance " + distance.toFixed(distance < 100 ? 4 : 1);
    const path = document.createElement("div");
    path.textContent = hit.filepath;
    const id = document.createElement("div");
    id.textContent = "#" + hit.id;
    caption.append(d, path, id);
    card.append(thumb, caption);
    card.addEventListener("click", () => like(hit));
    thumbnail(collection, hit.filepath, thumb);
    return card;
  }));
}

function showQuery(label, image) {
  const children = [];
  if (image) {
    const img = new Image();
    img.src = image;
    children.push(img);
  }
  const text = document.createElement("span");
  text.id = "query-label";
  text.textContent = label;
  children.push(text);
  el("query").replaceChildren(...children);
}

function ask(file) {
  if (!file) return;
  query = { image: file };
  offset = 0;
  showQuery(file.name, URL.createObjectURL(file));
  search();
}

function like(hit) {
  query = { like: { id: hit.id, filepath: hit.filepath } };
  offset = 0;
  showQuery("More like #" + hit.id + " " + hit.filepath, null);
  const img = document.querySelector('.hit[data-id="' + CSS.escape(hit.id) + '"] img');
  if (img) el("query").prepend(img.cloneNode());
  search();
}

function page(step) {
  offset = Math.max(0, offset + step * topK());
  search();
}

function useKey(event) {
  event.preventDefault();
  const key = el("key").value.trim();
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
  el("key").value = "";
  el("key-state").textContent = key ? "key set for this tab" : "no key";
  listCollections();
}

el("key-form").addEventListener("submit", useKey);
el("refresh").addEventListener("click", listCollections);
el("collection").addEventListener("change", () => { offset = 0; search(); });
el("file").addEventListener("change", (e) => ask(e.target.files[0]));
el("prev").addEventListener("click", () => page(-1));
el("next").addEventListener("click", () => page(1));
for (const id of ["top-k", "max-distance"]) {
  el(id).addEventListener("change", () => { offset = 0; search(); });
}
const drop = el("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  ask(e.dataTransfer.files[0]);
});
el("key-state").textContent = sessionStorage.getItem(KEY) ? "key set for this tab" : "";
listCollections();
