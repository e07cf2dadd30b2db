// The cubecut page: resolve the target, list the sectors whose cubes hold it, draw the
// quick look and offer the zip of TPFs. Every URL is relative to the page, so the page
// works wherever the API is mounted; nothing is loaded from anywhere else.
"use strict";

const TESSCUT = "tesscut/api/v0.1/";
const $ = (id) => document.getElementById(id);

class RequestFailed extends Error {}

/** The JSON answer of a GET, or a RequestFailed carrying the API's msg/message. */
async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new RequestFailed(body.msg || body.message || `${response.status} ${response.statusText}`);
  }
  return body;
}

/** Sector numbers typed as "2, 62" (or spaces); null when the field is empty. */
function parseSectors(text) {
  const tokens = text.split(/[\s,]+/).filter(Boolean);
  if (!tokens.length) return null;
  const sectors = tokens.map(Number);
  if (!sectors.every((s) => Number.isInteger(s) && s > 0)) {
    throw new RequestFailed(`sectors must be whole numbers, like "2, 62"; got "${text}"`);
  }
  return sectors;
}

function setStatus(text, state) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", state === "error");
  document.body.dataset.state = state;
}

function showSectors(rows) {
  const body = $("sector-table").tBodies[0];
  body.replaceChildren(...rows.map((row) => {
    const tr = document.createElement("tr");
    for (const value of [row.sectorName, Number(row.sector), row.camera, row.ccd]) {
      const td = document.createElement("td");
      td.textContent = value;
      tr.append(td);
    }
    return tr;
  }));
}

async function showPreview(query) {
  const response = await fetch(`${TESSCUT}quicklook?${query}`);
  if (!response.ok || !(response.headers.get("content-type") || "").startsWith("image/png")) {
    const body = await response.json().catch(() => ({}));
    throw new RequestFailed(body.msg || body.message || `the preview failed (${response.status})`);
  }
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(await response.blob());
  await preview.decode();
}

async function run() {
  $("results").hidden = true;
  $("download").hidden = true;
  const sectors = parseSectors($("sectors").value);
  const size = $("size").value;
  const product = $("product").value;
  setStatus("Resolving the target…", "busy");
  const target = await getJSON(`v1/resolve?target=${encodeURIComponent($("target").value)}`);
  const where = `RA ${target.ra.toFixed(5)}°, Dec ${target.dec.toFixed(5)}°`;
  setStatus(`Looking for cubes at ${where}…`, "busy");
  const found = await getJSON(`${TESSCUT}sector?${new URLSearchParams({ ra: target.ra, dec: target.dec, product })}`);
  const rows = found.results.filter((row) => !sectors || sectors.includes(Number(row.sector)));
  if (!rows.length) {
    const which = sectors ? ` in sector(s) ${sectors.join(", ")}` : "";
    setStatus(`No ingested ${product} cube holds ${where}${which}.`, "empty");
    return;
  }
  $("position").textContent = `${where} (${target.resolver === "sesame" ? "resolved by Sesame" : "as typed"})`;
  showSectors(rows);
  $("results").hidden = false;
  const query = new URLSearchParams({ ra: target.ra, dec: target.dec, x: size, y: size, product });
  if (sectors) query.set("sector", sectors.join(","));
  setStatus(`Cutting ${rows.length} cube(s) and drawing the preview…`, "busy");
  await showPreview(query);
  const download = $("download");
  download.href = `${TESSCUT}astrocut?${query}`;
  download.hidden = false;
  setStatus(`${rows.length} ${product} cube(s) hold ${where}.`, "done");
}

$("cutout-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const button = $("submit");
  button.disabled = true;
  run()
    .catch((error) => setStatus(error instanceof RequestFailed ? error.message : `Failed: ${error}`, "error"))
    .finally(() => { button.disabled = false; });
});
