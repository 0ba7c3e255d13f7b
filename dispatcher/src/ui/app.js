// The web view: polls /ui/api/overview (jobs, queues, consumers) and, for the job in the URL
// (#job=<id>), /ui/api/jobs/<id> (its timeline). Everything from the server is written with
// textContent, never as HTML: video names and analyzer errors are untrusted input.
"use strict";

const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("data-") || k === "title" || k === "href") e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return new Date(ms).toLocaleString();
}

function secs(ms) {
  return ms >= 10000 ? `${(ms / 1000).toFixed(0)} s` : `${(ms / 1000).toFixed(2)} s`;
}

async function getJson(path) {
  const r = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (r.status === 401) {
    location.reload(); // the server answers the page with its login form
    throw new Error("signed out");
  }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || `${path}: HTTP ${r.status}`);
  return body;
}

function progressBar(p) {
  const total = Math.max(1, p.total);
  const bar = el("div", { class: "progress", title: `${p.ok} ok, ${p.failed} failed, ${p.skipped} skipped of ${p.total}` });
  for (const kind of ["ok", "failed", "skipped"]) {
    const part = el("span", { class: kind });
    part.style.width = `${(100 * p[kind]) / total}%`;
    bar.append(part);
  }
  return el("div", { class: "progress-cell" }, bar, el("span", { class: "count" }, `${p.done}/${p.total}`));
}

function renderJobs(jobs) {
  const rows = jobs.map((j) =>
    el("tr", { "data-job-id": j.job_id, class: currentJob() === j.job_id ? "selected" : "" },
      el("td", {}, el("a", { href: `#job=${encodeURIComponent(j.job_id)}` }, j.job_id)),
      el("td", { class: "video", title: j.video }, j.video),
      el("td", {}, el("span", { class: `status ${j.status}`, "data-testid": "status" }, j.status)),
      el("td", {}, progressBar(j.progress)),
      el("td", { class: "muted" }, ago(j.created_at_ms))));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colSpan: 5, class: "muted" }, "no jobs yet")));
  $("jobs").replaceChildren(...rows);
}

function stageOf(queue, prefix) {
  return queue.startsWith(prefix + ".") ? queue.slice(prefix.length + 1) : queue;
}

function renderQueues(o) {
  $("queues").replaceChildren(...o.queues.map((q) => {
    const stage = stageOf(q.queue, o.prefix);
    const limit = o.stage_limits[stage];
    return el("tr", { "data-queue": q.queue },
      el("td", {}, q.queue),
      el("td", { class: "num", "data-testid": "ready" }, q.ready ?? "?"),
      el("td", { class: "num", "data-testid": "consumers" }, q.consumers ?? "?"),
      el("td", { class: "num muted" }, limit === undefined ? "" : limit));
  }));
  const byProcess = new Map();
  for (const c of o.consumers) {
    if (!byProcess.has(c.process)) byProcess.set(c.process, []);
    byProcess.get(c.process).push(c);
  }
  const rows = [];
  for (const [process, list] of byProcess) {
    // A worker opens one consumer of prefetch 1 per slot: show each stage once, with the sum.
    const stages = new Map();
    for (const c of list) {
      const s = stageOf(c.queue, o.prefix);
      const prev = stages.get(s);
      const n = c.prefetch ?? NaN;
      stages.set(s, prev === undefined ? n : prev + n);
    }
    rows.push(el("tr", { "data-process": process },
      el("td", {}, process),
      el("td", {}, [...stages.keys()].join(", ")),
      el("td", { class: "num" }, [...stages.values()].map((n) => (Number.isNaN(n) ? "?" : n)).join(" / ")),
      el("td", { class: "muted" }, list[0].host || "")));
  }
  $("workers").replaceChildren(...rows);
  $("workers-note").textContent = o.consumers_note || "";
}

function currentJob() {
  const m = location.hash.match(/^#job=(.+)$/);
  return m ? decodeURIComponent(m[1]) : null;
}

// Packs bars into rows so that overlapping tasks of one stage (its concurrency) sit one
// above the other instead of on top of each other.
function pack(bars) {
  const ends = [];
  for (const b of bars) {
    let row = ends.findIndex((end) => end <= b.start);
    if (row < 0) { row = ends.length; ends.push(0); }
    ends[row] = b.end;
    b.row = row;
  }
  return Math.max(1, ends.length);
}

function renderTimeline(t) {
  $("job-id").textContent = t.job.job_id;
  const p = t.job.progress;
  $("job-summary").textContent =
    `${t.job.status} — ${p.done}/${p.total} analyzers (${p.ok} ok, ${p.failed} failed, ${p.skipped} skipped) — ${t.job.video}`;
  const timed = t.tasks.filter((x) => x.started_at_ms && x.finished_at_ms);
  const t0 = Math.min(t.job.created_at_ms, ...timed.map((x) => x.started_at_ms));
  const t1 = Math.max(t0 + 1, t.job.completed_at_ms || 0, ...timed.map((x) => x.finished_at_ms),
    t.job.status === "completed" || t.job.status === "cancelled" ? 0 : Date.now());
  const span = t1 - t0;
  const lanes = t.stages.map((stage) => {
    const tasks = t.tasks.filter((x) => x.stage === stage);
    const bars = tasks.filter((x) => x.started_at_ms && x.finished_at_ms)
      .map((x) => ({ task: x, start: x.started_at_ms, end: x.finished_at_ms }))
      .sort((a, b) => a.start - b.start);
    const rows = pack(bars);
    const track = el("div", { class: "track" });
    track.style.height = `${rows * 22}px`;
    for (const b of bars) {
      const x = b.task;
      const lines = [`${x.analyzer}: ${x.state}`, `${secs(b.end - b.start)} (from +${secs(b.start - t0)})`];
      if (x.worker) lines.push(`worker ${x.worker}, ${x.backend}${x.backend === "synthetic" ? " (SYNTHETIC stand-in)" : ""}, attempts ${x.attempts}`);
      if (x.error) lines.push(`error: ${x.error}`);
      const bar = el("div", { class: `bar ${x.state}`, title: lines.join("\n"), "data-analyzer": x.analyzer, "data-state": x.state },
        el("span", {}, x.analyzer));
      bar.style.left = `${(100 * (b.start - t0)) / span}%`;
      bar.style.width = `max(3px, ${(100 * (b.end - b.start)) / span}%)`;
      bar.style.top = `${b.row * 22}px`;
      track.append(bar);
    }
    // Tasks without times: not run yet, or decided without running (skipped, dead-lettered).
    const untimed = tasks.filter((x) => !(x.started_at_ms && x.finished_at_ms));
    const chips = el("div", { class: "chips" }, ...untimed.map((x) => el("span", {
      class: `chip ${x.state}`, "data-analyzer": x.analyzer, "data-state": x.state,
      title: x.error ? `${x.analyzer}: ${x.state}\nerror: ${x.error}` : `${x.analyzer}: ${x.state}`,
    }, x.analyzer)));
    return el("div", { class: "lane", "data-stage": stage },
      el("div", { class: "lane-name" }, stage, el("span", { class: "muted" }, ` ${tasks.length}`)),
      el("div", { class: "lane-body" }, track, chips));
  });
  const axis = el("div", { class: "axis" }, el("span", {}, "0 s"), el("span", {}, secs(span)));
  $("timeline").replaceChildren(...lanes, axis);
  $("job-section").hidden = false;
}

async function refresh() {
  try {
    const o = await getJson("/ui/api/overview");
    $("prefix").textContent = o.prefix;
    renderJobs(o.jobs);
    renderQueues(o);
    const id = currentJob();
    if (id) renderTimeline(await getJson(`/ui/api/jobs/${encodeURIComponent(id)}`));
    else $("job-section").hidden = true;
    $("updated").textContent = `updated ${new Date(o.at_ms).toLocaleTimeString()}`;
    $("problem").hidden = true;
  } catch (e) {
    $("problem").textContent = String(e.message || e);
    $("problem").hidden = false;
  }
}

window.addEventListener("hashchange", refresh);
document.addEventListener("DOMContentLoaded", () => {
  $("job-close").addEventListener("click", (ev) => { ev.preventDefault(); location.hash = ""; });
  refresh();
  setInterval(refresh, POLL_MS);
});
