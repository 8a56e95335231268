// Edit a job's name and tags, or delete it, from the job page's header.
// Writes use PATCH/DELETE /training/jobs/{id}. A sign-in cookie only ever grants
// reading (api/session.py), so on a server with a write token the browser must send
// that token as a bearer header: on 401/403 the page explains this and asks for it.
// The token stays in this module's memory (this tab, until reload), never in storage.
import { API, el } from "./common.js";

const $ = (id) => document.getElementById(id);
const jobId = decodeURIComponent(window.location.pathname.split("/").filter(Boolean).pop());
const jobPath = `${API}/training/jobs/${encodeURIComponent(jobId)}`;
const MAX_TAGS = 100;
let writeToken = null;
let pending = null; // the write to retry once a token is given

class WriteError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Send a write; resolves to the response body (null for 204), throws WriteError. */
async function write(method, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (writeToken) headers.Authorization = `Bearer ${writeToken}`;
  const response = await fetch(jobPath, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  let parsed = null;
  try {
    parsed = await response.json();
  } catch (_) {
    /* not JSON: the status line says it */
  }
  if (!response.ok) {
    const message = parsed && parsed.error ? parsed.error.message : `${response.status} ${response.statusText}`;
    throw new WriteError(response.status, message);
  }
  return parsed;
}

function showError(message) {
  $("edit-error").textContent = message;
  $("edit-error").hidden = !message;
}

function askForToken(status) {
  const why = writeToken
    ? "That token cannot change jobs on this server (it is not the write token)."
    : "This server needs its write token to change or delete jobs. Signing in on the " +
      "dashboard only lets you read; paste the write token here (TRAINVIS_API_TOKEN, or " +
      "TRAINVIS_READ_TOKEN on a server with only that one). It is kept in this tab only " +
      "and sent with each change.";
  $("write-auth-why").textContent = status === 403 ? `Not allowed: ${why}` : why;
  $("write-auth").hidden = false;
  $("write-token").value = "";
  $("write-token").focus();
}

/** Run a write; on 401/403 keep it pending and ask for the write token. */
async function run(action) {
  showError("");
  try {
    await action();
    pending = null;
    $("write-auth").hidden = true;
  } catch (error) {
    if (error instanceof WriteError && (error.status === 401 || error.status === 403)) {
      pending = action;
      askForToken(error.status);
    } else {
      showError(`Could not save: ${error.message}`);
    }
  }
}

/** "a, b,,c " → ["a", "b", "c"] (duplicates dropped, order kept). */
export function parseTags(text) {
  const tags = [];
  for (const part of text.split(",")) {
    const tag = part.trim();
    if (tag && !tags.includes(tag)) tags.push(tag);
  }
  return tags.slice(0, MAX_TAGS);
}

function showJob(job) {
  document.title = `${job.name} — trainvis`;
  $("job-name").textContent = job.name;
  $("job-tags").replaceChildren(...(job.tags || []).map((tag) => el("span", { class: "tag" }, tag)));
}

async function openEditor() {
  showError("");
  try {
    const response = await fetch(jobPath, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    const job = (await response.json()).data;
    $("edit-name").value = job.name;
    $("edit-tags").value = (job.tags || []).join(", ");
  } catch (error) {
    showError(`Could not load the job: ${error.message}`);
    return;
  }
  $("job-edit").hidden = false;
  $("edit-name").focus();
}

async function save(event) {
  event.preventDefault();
  const body = { name: $("edit-name").value.trim(), tags: parseTags($("edit-tags").value) };
  await run(async () => {
    const updated = await write("PATCH", body);
    showJob(updated.data);
    $("job-edit").hidden = true;
  });
}

async function remove() {
  const name = $("job-name").textContent;
  if (!window.confirm(`Delete the job "${name}" and all its metrics? This cannot be undone.`)) return;
  await run(async () => {
    await write("DELETE");
    window.location.assign(`${API}/dashboard`);
  });
}

function useToken(event) {
  event.preventDefault();
  writeToken = $("write-token").value.trim() || null;
  if (pending) run(pending);
}

$("edit-job").addEventListener("click", openEditor);
$("edit-cancel").addEventListener("click", () => {
  $("job-edit").hidden = true;
  showError("");
});
$("job-edit").addEventListener("submit", save);
$("delete-job").addEventListener("click", remove);
$("write-auth").addEventListener("submit", useToken);
$("write-auth-cancel").addEventListener("click", () => {
  $("write-auth").hidden = true;
  pending = null;
});
