// The console: a hash-routed single page. Views read through the public APIs (api.js) and redraw when
// the job feed says something they show has changed (or, without a feed, every few seconds).
import * as api from "./api.js";
import { drawDag } from "./dag.js";
import { ago, badge, confirmAction, duration, h, nameOf, swap, toast, when } from "./ui.js";

const STATUSES = ["SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED"];
const ACTIVE = new Set(["SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING"]);
const CANCELLABLE = new Set(["SUBMITTED", "PENDING", "RUNNABLE"]);
const COUNT_CAP = 1000; // one ListJobs page per queue and state; more shows as "1000+"
const LOG_GROUP = "/aws/batch/job";
const RESOURCE_UNITS = { VCPU: "vCPU", MEMORY: "MiB memory", GPU: "GPU" };
const view = document.getElementById("view");

let current = null; // the shown view: {refresh(), wants(changes), dispose()}
let feed = null;
let feedState = "connecting";
let pending = null;
let lastRefresh = 0;

// --- routing ------------------------------------------------------------------------------------------
function route() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?");
  const params = new URLSearchParams(query);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "jobs" && parts[1]) return ["jobs", () => jobView(parts[1])];
  if (parts[0] === "jobs") return ["jobs", () => jobsView(params)];
  if (parts[0] === "workflows" && parts[1] === "runs" && parts[2]) return ["workflows", () => runView(parts[2])];
  if (parts[0] === "workflows") return ["workflows", () => runsView(params)];
  return ["dashboard", () => dashboardView()];
}

async function show() {
  if (current?.dispose) current.dispose();
  current = null;
  const [section, make] = route();
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  view.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  const controller = make();
  current = controller;
  await refreshNow();
}

async function refreshNow() {
  const controller = current;
  if (!controller) return;
  lastRefresh = Date.now();
  try {
    await controller.refresh();
    document.getElementById("banner")?.remove();
  } catch (error) {
    if (controller !== current) return;
    if (error instanceof api.ApiError && error.isAuth) {
      signIn(error.message);
      return;
    }
    showBanner(error.message);
  }
}

function showBanner(message) {
  let node = document.getElementById("banner");
  if (!node) {
    node = h("div", { id: "banner", class: "banner", role: "alert" });
    view.prepend(node);
  }
  node.textContent = message;
}

/** Redraw soon (at most once per the view's minInterval) when the view cares about these changes. */
function changed(changes) {
  if (!current || (changes && current.wants && !current.wants(changes))) return;
  if (pending) return;
  const wait = Math.max(0, (current.minInterval || 1000) - (Date.now() - lastRefresh));
  pending = setTimeout(() => {
    pending = null;
    refreshNow();
  }, wait);
}

// --- dashboard ----------------------------------------------------------------------------------------
function dashboardView() {
  const tiles = h("div", { class: "tiles", id: "status-tiles" });
  const queuesBody = h("div", { class: "scroll" });
  const envBody = h("div", { class: "scroll" });
  const chartBody = h("div", { class: "body chart" });
  const runsBody = h("div", { class: "scroll" });
  const frontBody = h("div", { class: "scroll" });
  view.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Dashboard"), h("span", { class: "spacer" }),
      h("span", { class: "muted", id: "updated" })),
    tiles,
    h("div", { class: "grid two dash" },
      h("div", { class: "grid" },
        h("section", { class: "panel", "aria-labelledby": "queues-title" },
          h("div", { class: "panel-head" }, h("h2", { id: "queues-title" }, "Job queues")), queuesBody),
        h("section", { class: "panel", "aria-labelledby": "ce-title" },
          h("div", { class: "panel-head" }, h("h2", { id: "ce-title" }, "Compute environments")), envBody)),
      h("div", { class: "grid" },
        h("section", { class: "panel", "aria-labelledby": "throughput-title" },
          h("div", { class: "panel-head" }, h("h2", { id: "throughput-title" }, "Finished jobs, last hour"),
            h("span", { class: "spacer" }),
            h("span", { class: "legend" }, h("span", { style: "--c: var(--succeeded)" }, "succeeded"),
              h("span", { style: "--c: var(--failed)" }, "failed"))),
          chartBody),
        h("section", { class: "panel", "aria-labelledby": "front-title" },
          h("div", { class: "panel-head" }, h("h2", { id: "front-title" }, "Next to run"), h("span", { class: "spacer" }),
            h("span", { class: "muted" }, "head of each queue and why it waits")), frontBody),
        h("section", { class: "panel", "aria-labelledby": "runs-title" },
          h("div", { class: "panel-head" }, h("h2", { id: "runs-title" }, "Recent workflow runs"), h("span", { class: "spacer" }),
            h("a", { href: "#/workflows" }, "All runs")), runsBody)),
    ),
  );
  return {
    wants: () => true,
    // Its counts take a few listings per queue: while thousands of jobs change, redraw every 3 s.
    minInterval: 3000,
    async refresh() {
      const [queues, envs] = await Promise.all([
        api.listAll("DescribeJobQueues", {}, "jobQueues", 10000),
        api.listAll("DescribeComputeEnvironments", {}, "computeEnvironments", 10000),
      ]);
      const names = queues.items.map((q) => q.jobQueueName).sort();
      const perQueue = await Promise.all(names.map(async (queue) => {
        const pages = await Promise.all(STATUSES.map((jobStatus) =>
          api.batch("ListJobs", { jobQueue: queue, jobStatus, maxResults: COUNT_CAP })));
        const snapshot = await api.batch("GetJobQueueSnapshot", { jobQueue: queue }).catch(() => ({}));
        const usage = snapshot.queueUtilization?.totalCapacityUsage || [];
        const counts = {};
        const finished = [];
        STATUSES.forEach((status, i) => {
          counts[status] = { n: pages[i].jobSummaryList.length, more: Boolean(pages[i].nextToken) };
          if (status === "SUCCEEDED" || status === "FAILED") finished.push(...pages[i].jobSummaryList);
        });
        const head = snapshot.frontOfQueue?.jobs?.[0];
        return {
          queue, counts, finished, head, waiting: snapshot.frontOfQueue?.jobs?.length || 0,
          vcpus: usage.find((u) => u.capacityUnit === "VCPU")?.quantity,
        };
      }));
      const families = await api.metrics().catch(() => ({}));
      const runs = await api.workflows("GET", "runs?maxResults=6").catch(() => null);
      drawTiles(tiles, perQueue);
      drawQueues(queuesBody, queues.items, perQueue);
      drawEnvironments(envBody, envs.items, families);
      drawThroughput(chartBody, perQueue.flatMap((q) => q.finished));
      drawRecentRuns(runsBody, runs);
      await drawFront(frontBody, perQueue);
      document.getElementById("updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
    },
  };
}

function countText(c) {
  return c.more ? `${c.n}+` : String(c.n);
}

function drawTiles(tiles, perQueue) {
  swap(tiles, STATUSES.map((status) => {
    const n = perQueue.reduce((sum, q) => sum + q.counts[status].n, 0);
    const more = perQueue.some((q) => q.counts[status].more);
    return h("a", { class: "tile", href: `#/jobs?status=${status}`, "data-status": status, "data-key": `tile-${status}` },
      h("div", { class: "label" }, status.toLowerCase()),
      h("div", { class: "value", "data-count": n }, more ? `${n}+` : String(n)));
  }));
}

function drawQueues(body, queues, perQueue) {
  if (!queues.length) {
    swap(body, h("div", { class: "empty" }, "No job queues yet."));
    return;
  }
  const byName = Object.fromEntries(queues.map((q) => [q.jobQueueName, q]));
  swap(body, h("table", { id: "queues" },
    h("thead", {}, h("tr", {}, h("th", {}, "Queue"),
      ...STATUSES.map((s) => h("th", { class: "num", title: s }, s.toLowerCase())), h("th", { class: "num" }, "vCPUs"))),
    h("tbody", {}, perQueue.map((q) => {
      const info = byName[q.queue] || {};
      return h("tr", { "data-queue": q.queue },
        h("td", {}, h("a", { href: `#/jobs?queue=${encodeURIComponent(q.queue)}`, "data-key": `q-${q.queue}` }, q.queue),
          h("div", { class: "idline" }, `${(info.state || "").toLowerCase()} · priority ${info.priority ?? "—"}`)),
        ...STATUSES.map((status) => {
          const c = q.counts[status];
          return h("td", { class: "num", "data-status-count": status },
            c.n === 0 ? h("span", { class: "count zero", "data-count": 0 }, "0")
              : h("a", { class: "count", "data-count": c.n, "data-key": `c-${q.queue}-${status}`,
                href: `#/jobs?queue=${encodeURIComponent(q.queue)}&status=${status}` }, countText(c)));
        }),
        h("td", { class: "num" }, q.vcpus === undefined ? "—" : String(q.vcpus)));
    }))));
}

function metric(families, name, ce) {
  const sample = (families[name] || []).find((s) => s.labels.ce === ce);
  return sample ? sample.value : undefined;
}

function meter(used, total, unit) {
  if (used === undefined) return h("span", { class: "muted" }, "—");
  const pct = total ? Math.min(100, (used / total) * 100) : 0;
  return h("div", { class: "meter" },
    h("div", { class: "bar" }, h("div", { class: "fill", style: `width: ${pct.toFixed(1)}%` })),
    h("span", { class: "text" }, `${+used.toFixed(2)}${total !== undefined ? ` / ${+total.toFixed(2)}` : ""}${unit}`));
}

function drawEnvironments(body, envs, families) {
  if (!envs.length) {
    swap(body, h("div", { class: "empty" }, "No compute environments yet."));
    return;
  }
  swap(body, h("table", { id: "environments" },
    h("thead", {}, h("tr", {}, h("th", {}, "Compute environment"), h("th", {}, "State"), h("th", {}, "vCPUs in use"),
      h("th", {}, "Memory in use"))),
    h("tbody", {}, envs.sort((a, b) => a.computeEnvironmentName.localeCompare(b.computeEnvironmentName)).map((ce) => {
      const name = ce.computeEnvironmentName;
      const max = ce.computeResources?.maxvCpus;
      const vcpus = metric(families, "openbatch_compute_environment_vcpus_in_use", name);
      const vcpuCap = metric(families, "openbatch_compute_environment_vcpus_capacity", name) ?? max;
      const mem = metric(families, "openbatch_compute_environment_memory_mib_in_use", name);
      const memCap = metric(families, "openbatch_compute_environment_memory_mib_capacity", name);
      return h("tr", { "data-ce": name },
        h("td", {}, name, h("div", { class: "idline" }, `${(ce.type || "").toLowerCase()} · max ${max ?? "—"} vCPUs`)),
        h("td", {}, `${(ce.state || "").toLowerCase()}`, h("div", { class: "idline" }, (ce.status || "").toLowerCase())),
        h("td", {}, meter(vcpus, vcpuCap, "")),
        h("td", {}, meter(mem === undefined ? undefined : mem / 1024, memCap === undefined ? undefined : memCap / 1024, " GiB")));
    }))));
}

function drawThroughput(body, finished) {
  const now = Date.now();
  const minute = 60000;
  const start = now - 60 * minute;
  const ok = new Array(60).fill(0);
  const bad = new Array(60).fill(0);
  for (const job of finished) {
    if (!job.stoppedAt || job.stoppedAt < start) continue;
    const i = Math.min(59, Math.floor((job.stoppedAt - start) / minute));
    (job.status === "FAILED" ? bad : ok)[i]++;
  }
  const peak = Math.max(1, ...ok.map((v, i) => v + bad[i]));
  const W = 600, H = 150, left = 30, bottom = 18, top = 8;
  const bw = (W - left) / 60;
  const scale = (v) => ((H - bottom - top) * v) / peak;
  const SVG = "http://www.w3.org/2000/svg";
  const s = (name, attrs, text) => {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img",
    "aria-label": `${ok.reduce((a, b) => a + b, 0)} jobs succeeded and ${bad.reduce((a, b) => a + b, 0)} failed in the last hour` });
  for (const tick of new Set([0, Math.floor(peak / 2), peak])) {
    const y = H - bottom - scale(tick);
    svg.append(s("line", { class: "gridline", x1: left, x2: W, y1: y, y2: y }));
    svg.append(s("text", { class: "axis", x: left - 6, y: y + 3, "text-anchor": "end" }, String(tick)));
  }
  ok.forEach((v, i) => {
    const x = left + i * bw + 1;
    const hOk = scale(v);
    const hBad = scale(bad[i]);
    if (v) svg.append(s("rect", { x, y: H - bottom - hOk, width: bw - 2, height: hOk, rx: 1.5, fill: "var(--succeeded)" },));
    if (bad[i]) svg.append(s("rect", { x, y: H - bottom - hOk - hBad, width: bw - 2, height: hBad, rx: 1.5, fill: "var(--failed)" }));
    if (v || bad[i]) svg.lastChild.append(s("title", {}, `${v} succeeded, ${bad[i]} failed, ${60 - i} min ago`));
  });
  for (const [i, label] of [[0, "-60m"], [30, "-30m"], [59, "now"]]) {
    svg.append(s("text", { class: "axis", x: left + i * bw + bw / 2, y: H - 4, "text-anchor": i === 59 ? "end" : "middle" }, label));
  }
  swap(body, svg);
}

async function drawFront(body, perQueue) {
  const heads = perQueue.filter((q) => q.head);
  if (!heads.length) {
    swap(body, h("div", { class: "empty" }, "No job is waiting for capacity."));
    return;
  }
  const ids = heads.map((q) => q.head.jobArn.split("/").pop());
  const described = Object.fromEntries(
    (await api.batch("DescribeJobs", { jobs: ids.slice(0, 100) })).jobs.map((j) => [j.jobId, j]));
  swap(body, h("table", { id: "front" }, h("tbody", {}, heads.map((q, i) => {
    const job = described[ids[i]];
    if (!job) return null;
    return h("tr", { "data-queue": q.queue },
      h("td", {}, h("a", { href: `#/jobs/${job.jobId}`, "data-key": `f-${job.jobId}` }, job.jobName),
        h("div", { class: "idline" }, `${q.queue}${q.waiting > 1 ? ` · ${q.waiting >= 100 ? "100+" : q.waiting} waiting` : ""}`)),
      h("td", { class: "muted" }, job.statusReason || "waiting for the scheduler"),
      h("td", { class: "num muted", title: when(q.head.earliestTimeAtPosition) }, ago(q.head.earliestTimeAtPosition)));
  }))));
}

function drawRecentRuns(body, runs) {
  if (!runs) {
    swap(body, h("div", { class: "empty" }, "Workflow runs are not available."));
    return;
  }
  if (!runs.runs.length) {
    swap(body, h("div", { class: "empty" }, "No workflow runs yet."));
    return;
  }
  swap(body, h("table", {}, h("tbody", {}, runs.runs.map((run) =>
    h("tr", {},
      h("td", {}, h("a", { href: `#/workflows/runs/${run.runId}`, "data-key": `r-${run.runId}` }, run.workflowName),
        h("div", { class: "idline mono" }, run.runId.slice(0, 8))),
      h("td", {}, badge(run.status)),
      h("td", { class: "num muted" }, ago(run.createdAt)))))));
}

// --- job list -----------------------------------------------------------------------------------------
function jobsView(params) {
  const state = {
    queue: params.get("queue") || "",
    status: params.get("status") || "",
    name: params.get("name") || "",
    tokens: [null], // nextToken of each page shown so far (paging back and forth)
    page: 0,
  };
  const queueSelect = h("select", { id: "filter-queue", "aria-label": "Job queue" });
  const statusSelect = h("select", { id: "filter-status", "aria-label": "Status" },
    h("option", { value: "" }, "All states"), STATUSES.map((s) => h("option", { value: s }, s.toLowerCase())));
  statusSelect.value = state.status;
  const nameInput = h("input", { id: "filter-name", type: "search", placeholder: "Name or prefix*", value: state.name, "aria-label": "Job name" });
  const tableBody = h("div", { class: "scroll" });
  const note = h("div", { class: "note", hidden: true });
  const prev = h("button", { type: "button", id: "page-prev", disabled: true }, "‹ Previous");
  const next = h("button", { type: "button", id: "page-next", disabled: true }, "Next ›");
  const pageLabel = h("span", {});
  const apply = () => {
    const q = new URLSearchParams();
    if (queueSelect.value) q.set("queue", queueSelect.value);
    if (statusSelect.value) q.set("status", statusSelect.value);
    if (nameInput.value.trim()) q.set("name", nameInput.value.trim());
    location.hash = `#/jobs?${q}`;
  };
  queueSelect.addEventListener("change", apply);
  statusSelect.addEventListener("change", apply);
  nameInput.addEventListener("keydown", (e) => { if (e.key === "Enter") apply(); });
  prev.addEventListener("click", () => { state.page--; refreshNow(); });
  next.addEventListener("click", () => { state.page++; refreshNow(); });
  view.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Jobs")),
    h("section", { class: "panel" },
      h("div", { class: "filters" },
        h("label", {}, "Queue", queueSelect), h("label", {}, "State", statusSelect), h("label", {}, "Name", nameInput),
        h("button", { type: "button", onclick: apply }, "Apply")),
      note, tableBody,
      h("div", { class: "pager" }, pageLabel, prev, next)),
  );
  let queuesLoaded = false;
  return {
    wants: (changes) => state.page === 0 && changes.some((c) => !state.queue || c.jobQueue === state.queue),
    async refresh() {
      if (!queuesLoaded) {
        const queues = (await api.listAll("DescribeJobQueues", {}, "jobQueues", 10000)).items.map((q) => q.jobQueueName).sort();
        if (!state.queue || !queues.includes(state.queue)) state.queue = queues[0] || "";
        queueSelect.replaceChildren(...queues.map((q) => h("option", { value: q }, q)));
        queueSelect.value = state.queue;
        queuesLoaded = true;
      }
      if (!state.queue) {
        swap(tableBody, h("div", { class: "empty" }, "No job queues yet."));
        return;
      }
      const request = { jobQueue: state.queue };
      let clientStatus = null;
      if (state.name) {
        request.filters = [{ name: "JOB_NAME", values: [state.name] }];
        // A filter lists every state (as on AWS): the state is then picked out here.
        clientStatus = state.status || null;
      } else if (state.status) {
        request.jobStatus = state.status;
        request.maxResults = 100;
      } else {
        // Every state, newest first: the created-after filter is the API's way to list them all.
        request.filters = [{ name: "AFTER_CREATED_AT", values: ["0"] }];
      }
      const token = state.tokens[state.page];
      if (token) request.nextToken = token;
      const page = await api.batch("ListJobs", request);
      state.tokens[state.page + 1] = page.nextToken || undefined;
      let jobs = page.jobSummaryList;
      if (clientStatus) jobs = jobs.filter((j) => j.status === clientStatus);
      note.hidden = !clientStatus;
      note.textContent = clientStatus ? `Name filter: showing the ${clientStatus.toLowerCase()} jobs of this page.` : "";
      prev.disabled = state.page === 0;
      next.disabled = !page.nextToken;
      pageLabel.textContent = `Page ${state.page + 1}`;
      drawJobTable(tableBody, jobs);
    },
  };
}

function drawJobTable(body, jobs, { index = false } = {}) {
  if (!jobs.length) {
    swap(body, h("div", { class: "empty" }, "No jobs match."));
    return;
  }
  swap(body, h("table", { id: "jobs" },
    h("thead", {}, h("tr", {}, index ? h("th", { class: "num" }, "Index") : null, h("th", {}, "Name"), h("th", {}, "Job id"),
      h("th", {}, "State"), h("th", {}, "Created"), h("th", {}, "Duration"), h("th", {}, "Reason"))),
    h("tbody", {}, jobs.map((job) => h("tr", { "data-job-id": job.jobId, "data-status": job.status },
      index ? h("td", { class: "num" }, String(job.arrayProperties?.index ?? "")) : null,
      h("td", {}, h("a", { href: `#/jobs/${job.jobId}`, "data-key": job.jobId }, job.jobName),
        job.arrayProperties?.size ? h("span", { class: "chip", style: "margin-left: 6px" }, `array × ${job.arrayProperties.size}`) : null),
      h("td", { class: "mono idline" }, job.jobId),
      h("td", {}, badge(job.status)),
      h("td", { title: when(job.createdAt) }, ago(job.createdAt)),
      h("td", {}, duration(job.startedAt, job.stoppedAt)),
      h("td", { class: "muted" }, job.statusReason || job.container?.reason || ""))))));
}

// --- job detail ---------------------------------------------------------------------------------------
function jobView(jobId) {
  const head = h("div", { class: "page-head" });
  const overview = h("div", { class: "body" });
  const attempts = h("div", { class: "scroll" });
  const side = h("div", { class: "grid" });
  const arrayPanel = h("section", { class: "panel", hidden: true, id: "array" });
  const logPre = h("pre", { class: "log", id: "log", tabindex: "0", "aria-label": "Log output" });
  const logHead = h("span", { class: "muted mono", id: "log-stream" });
  view.replaceChildren(head, h("div", { class: "grid two" },
    h("div", { class: "grid" },
      h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", {}, "Overview")), overview),
      arrayPanel,
      h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", {}, "Log"), h("span", { class: "spacer" }), logHead), logPre),
      h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", {}, "Attempts")), attempts)),
    side));
  const log = { stream: null, token: null, lines: 0, timer: null, busy: false, done: false };
  let job = null;

  async function pollLog() {
    if (log.busy || !log.stream) return;
    log.busy = true;
    try {
      for (let i = 0; i < 20; i++) {
        const request = { logGroupName: LOG_GROUP, logStreamName: log.stream, startFromHead: true, limit: 1000 };
        if (log.token) request.nextToken = log.token;
        const page = await api.logs("GetLogEvents", request);
        const atBottom = logPre.scrollHeight - logPre.scrollTop - logPre.clientHeight < 30;
        for (const event of page.events || []) {
          logPre.append(h("span", { class: "ts" }, new Date(event.timestamp).toLocaleTimeString() + "  "), event.message, "\n");
          log.lines++;
        }
        if (atBottom) logPre.scrollTop = logPre.scrollHeight;
        const same = page.nextForwardToken === log.token;
        log.token = page.nextForwardToken || log.token;
        if (same || !(page.events || []).length) break;
      }
    } catch (error) {
      if (!(error instanceof api.ApiError && error.type === "ResourceNotFoundException")) logHead.textContent = error.message;
    } finally {
      log.busy = false;
    }
  }

  const controller = {
    wants: (changes) => changes.some((c) => c.jobId === jobId || c.arrayJobId === jobId),
    dispose() { clearInterval(log.timer); },
    async refresh() {
      const found = (await api.batch("DescribeJobs", { jobs: [jobId] })).jobs;
      if (!found.length) {
        swap(head, h("h1", {}, "Job not found"));
        swap(overview, h("p", {}, "No job has the id ", h("code", {}, jobId), "."));
        return;
      }
      job = found[0];
      drawJobHead(head, job, () => refreshNow());
      drawOverview(overview, job);
      drawAttempts(attempts, job);
      swap(side, ...drawSide(job));
      if (job.arrayProperties?.size) {
        arrayPanel.hidden = false;
        await drawArray(arrayPanel, job);
      }
      const stream = job.container?.logStreamName || job.attempts?.at(-1)?.container?.logStreamName;
      if (stream && stream !== log.stream) {
        log.stream = stream;
        log.token = null;
        logPre.replaceChildren();
        logHead.textContent = stream;
      }
      if (!stream && !job.arrayProperties?.size) logHead.textContent = ACTIVE.has(job.status) ? "waiting for the job to start" : "no log";
      if (job.arrayProperties?.size && !stream) logPre.closest("section").hidden = true;
      await pollLog();
      // Output arrives without state changes: tail it every second while the job runs.
      clearInterval(log.timer);
      if (ACTIVE.has(job.status)) log.timer = setInterval(pollLog, 1000);
    },
  };
  return controller;
}

function drawJobHead(head, job, after) {
  const actions = [];
  if (CANCELLABLE.has(job.status)) {
    actions.push(h("button", { type: "button", class: "danger", id: "cancel-job", onclick: () => act(job, "CancelJob", after) }, "Cancel"));
  }
  if (ACTIVE.has(job.status)) {
    actions.push(h("button", { type: "button", class: "danger", id: "terminate-job", onclick: () => act(job, "TerminateJob", after) }, "Terminate"));
  }
  const parent = job.arrayProperties?.index !== undefined && job.jobId.includes(":") ? job.jobId.split(":")[0] : null;
  swap(head,
    h("div", {},
      h("div", { class: "crumbs" }, h("a", { href: `#/jobs?queue=${encodeURIComponent(nameOf(job.jobQueue))}` }, nameOf(job.jobQueue)),
        parent ? [" / ", h("a", { href: `#/jobs/${parent}` }, "array " + parent.slice(0, 8))] : null),
      h("div", { class: "job-title" }, h("h1", { id: "job-name" }, job.jobName), h("span", { id: "job-status" }, badge(job.status))),
      h("div", { class: "idline mono" }, job.jobId)),
    h("span", { class: "spacer" }), ...actions);
}

async function act(job, operation, after) {
  const cancel = operation === "CancelJob";
  const reason = await confirmAction({
    title: `${cancel ? "Cancel" : "Terminate"} ${job.jobName}?`,
    text: cancel
      ? "The job will not start. Jobs that depend on it fail."
      : "A running attempt is stopped; the job fails and is not retried.",
    action: cancel ? "Cancel job" : "Terminate job",
    reason: `${cancel ? "Cancelled" : "Terminated"} from the console`,
  });
  if (reason === null) return;
  try {
    await api.batch(operation, { jobId: job.jobId, reason });
    toast(`${cancel ? "Cancelling" : "Terminating"} ${job.jobName}`);
    after();
  } catch (error) {
    toast(error.message, true);
  }
}

function drawOverview(body, job) {
  const c = job.container || {};
  const rows = [
    ["State reason", job.statusReason || "—"],
    ["Job definition", nameOf(job.jobDefinition)],
    ["Created", `${when(job.createdAt)} (${ago(job.createdAt)})`],
    ["Started", when(job.startedAt)],
    ["Stopped", when(job.stoppedAt)],
    ["Duration", duration(job.startedAt, job.stoppedAt)],
    ["Exit code", c.exitCode ?? "—"],
    ["Resources", (c.resourceRequirements || []).map((r) => `${r.value} ${RESOURCE_UNITS[r.type] || r.type}`).join(", ") || `${c.vcpus ?? "—"} vCPU, ${c.memory ?? "—"} MiB`],
    ["Retry", job.retryStrategy?.attempts ? `${job.retryStrategy.attempts} attempts` : "—"],
    ["Timeout", job.timeout?.attemptDurationSeconds ? `${job.timeout.attemptDurationSeconds}s` : "—"],
  ];
  swap(body,
    h("dl", { class: "props" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])),
    c.command ? [h("h3", { class: "muted", style: "font-size:12px;margin:14px 0 6px" }, "Command"),
      h("pre", { class: "command mono" }, c.command.join(" "))] : null);
}

function drawAttempts(body, job) {
  const attempts = job.attempts || [];
  if (!attempts.length) {
    swap(body, h("div", { class: "empty" }, "No finished attempt yet."));
    return;
  }
  swap(body, h("table", { id: "attempts" },
    h("thead", {}, h("tr", {}, h("th", { class: "num" }, "#"), h("th", {}, "Started"), h("th", {}, "Duration"),
      h("th", { class: "num" }, "Exit"), h("th", {}, "Reason"))),
    h("tbody", {}, attempts.map((a, i) => h("tr", {},
      h("td", { class: "num" }, String(i + 1)),
      h("td", {}, when(a.startedAt)),
      h("td", {}, duration(a.startedAt, a.stoppedAt)),
      h("td", { class: "num" }, String(a.container?.exitCode ?? "—")),
      h("td", { class: "muted" }, a.statusReason || a.container?.reason || ""))))));
}

function keyValues(title, entries, id) {
  return h("section", { class: "panel", id },
    h("div", { class: "panel-head" }, h("h2", {}, title)),
    entries.length
      ? h("div", { class: "body" }, h("dl", { class: "props mono" }, entries.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])))
      : h("div", { class: "empty" }, "None"));
}

function drawSide(job) {
  const deps = job.dependsOn || [];
  const tags = Object.entries(job.tags || {});
  return [
    h("section", { class: "panel", id: "dependencies" },
      h("div", { class: "panel-head" }, h("h2", {}, "Depends on")),
      deps.length
        ? h("div", { class: "body chips" }, deps.map((d) =>
          h("a", { class: "chip mono", href: `#/jobs/${d.jobId}` }, d.jobId + (d.type ? ` (${d.type.toLowerCase()})` : ""))))
        : h("div", { class: "empty" }, "No dependencies")),
    keyValues("Parameters", Object.entries(job.parameters || {}), "parameters"),
    keyValues("Environment", (job.container?.environment || []).map((e) => [e.name, e.value]), "environment"),
    tags.length ? keyValues("Tags", tags, "tags") : null,
  ].filter(Boolean);
}

async function drawArray(panel, job) {
  const size = job.arrayProperties.size;
  const children = [];
  // Each state's children, in index order; together they cover the whole array.
  await Promise.all(STATUSES.map(async (status) => {
    const listed = await api.listAll("ListJobs", { arrayJobId: job.jobId, jobStatus: status, maxResults: 1000 }, "jobSummaryList", 10000);
    children.push(...listed.items);
  }));
  children.sort((a, b) => (a.arrayProperties?.index ?? 0) - (b.arrayProperties?.index ?? 0));
  const summary = job.arrayProperties.statusSummary || {};
  swap(panel,
    h("div", { class: "panel-head" }, h("h2", {}, `Array children (${size})`)),
    h("div", { class: "array-summary" }, STATUSES.map((s) =>
      h("span", { "data-summary": s }, badge(s), " ", h("strong", {}, String(summary[s] ?? 0))))),
    h("div", { class: "array-grid", id: "array-grid", role: "list" }, children.map((child) =>
      h("a", {
        href: `#/jobs/${child.jobId}`, role: "listitem", "data-status": child.status, "data-index": child.arrayProperties?.index,
        "data-key": child.jobId, title: `#${child.arrayProperties?.index}: ${child.status}`,
        "aria-label": `Child ${child.arrayProperties?.index}: ${child.status}`,
      }))));
}

// --- workflows ----------------------------------------------------------------------------------------
function runsView(params) {
  const status = params.get("status") || "";
  const body = h("div", { class: "scroll" });
  const select = h("select", { "aria-label": "Run state", id: "run-status" }, h("option", { value: "" }, "All states"),
    ["RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"].map((s) => h("option", { value: s }, s.toLowerCase())));
  select.value = status;
  select.addEventListener("change", () => (location.hash = select.value ? `#/workflows?status=${select.value}` : "#/workflows"));
  view.replaceChildren(h("div", { class: "page-head" }, h("h1", {}, "Workflow runs")),
    h("section", { class: "panel" }, h("div", { class: "filters" }, h("label", {}, "State", select)), body));
  return {
    wants: () => true,
    async refresh() {
      const runs = await api.workflows("GET", `runs?maxResults=100${status ? `&status=${status}` : ""}`);
      if (!runs.runs.length) {
        swap(body, h("div", { class: "empty" }, "No workflow runs yet. Start one with openbatch workflow run FILE."));
        return;
      }
      swap(body, h("table", { id: "runs" },
        h("thead", {}, h("tr", {}, h("th", {}, "Workflow"), h("th", {}, "Run id"), h("th", {}, "State"), h("th", {}, "Steps"),
          h("th", {}, "Started"), h("th", {}, "Duration"))),
        h("tbody", {}, runs.runs.map((run) => h("tr", { "data-run-id": run.runId },
          h("td", {}, h("a", { href: `#/workflows/runs/${run.runId}`, "data-key": run.runId }, run.workflowName),
            h("span", { class: "muted" }, ` r${run.revision}`)),
          h("td", { class: "mono idline" }, run.runId),
          h("td", {}, badge(run.status)),
          h("td", {}, h("span", { class: "chips" }, Object.entries(run.stepCounts || {}).map(([s, n]) =>
            h("span", { class: "badge", "data-status": s }, `${n} ${s.toLowerCase()}`)))),
          h("td", { title: when(run.createdAt) }, ago(run.createdAt)),
          h("td", {}, duration(run.createdAt, run.stoppedAt)))))));
    },
  };
}

function runView(runId) {
  const head = h("div", { class: "page-head" });
  const dag = h("div", { class: "dag", id: "dag" });
  const steps = h("div", { class: "scroll" });
  const params = h("div", {});
  view.replaceChildren(head,
    h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", {}, "Steps")), dag),
    h("div", { class: "grid two", style: "margin-top:16px" },
      h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", {}, "Step jobs")), steps), params));
  let definition = null;
  let jobIds = new Set();
  return {
    wants: (changes) => changes.some((c) => jobIds.has(c.jobId) || jobIds.has(c.arrayJobId)) || jobIds.size === 0,
    async refresh() {
      const run = await api.workflows("GET", `runs/${encodeURIComponent(runId)}`);
      if (!definition || definition.revision !== run.revision) {
        definition = await api.workflows("GET", `definitions/${encodeURIComponent(run.workflowName)}?revision=${run.revision}`);
      }
      const stepStates = run.steps || {};
      jobIds = new Set(Object.values(stepStates).map((s) => s.jobId).filter(Boolean));
      const docSteps = definition.document?.steps || {};
      const shape = Object.fromEntries(Object.keys({ ...docSteps, ...stepStates }).map((name) =>
        [name, { dependsOn: docSteps[name]?.dependsOn || [] }]));
      const actions = [];
      if (run.status === "RUNNING") {
        actions.push(h("button", { type: "button", class: "danger", id: "cancel-run", onclick: () => runAction(run, "cancel") }, "Cancel run"));
      } else if (run.status === "FAILED" || run.status === "CANCELLED") {
        actions.push(h("button", { type: "button", class: "primary", id: "redrive-run", onclick: () => runAction(run, "redrive") }, "Redrive"));
      }
      swap(head,
        h("div", {},
          h("div", { class: "crumbs" }, h("a", { href: "#/workflows" }, "Workflow runs")),
          h("div", { class: "job-title" }, h("h1", {}, `${run.workflowName}`), h("span", { class: "muted" }, `revision ${run.revision}`),
            h("span", { id: "run-status-badge" }, badge(run.status))),
          h("div", { class: "idline mono", id: "run-head" }, run.runId, run.redriveCount ? ` · redriven ${run.redriveCount}×` : "")),
        h("span", { class: "spacer" }), ...actions);
      swap(dag, drawDag(shape, stepStates, (name, state) => (state.jobId ? `#/jobs/${state.jobId}` : null)));
      swap(steps, h("table", { id: "steps" },
        h("thead", {}, h("tr", {}, h("th", {}, "Step"), h("th", {}, "State"), h("th", {}, "Job"), h("th", {}, "Duration"), h("th", {}, "Reason"))),
        h("tbody", {}, Object.entries(stepStates).map(([name, s]) => h("tr", { "data-step": name, "data-status": s.status },
          h("td", {}, name),
          h("td", {}, badge(s.status)),
          h("td", { class: "mono idline" }, s.jobId ? h("a", { href: `#/jobs/${s.jobId}`, "data-key": `s-${name}` }, s.jobId.slice(0, 8)) : "—"),
          h("td", {}, duration(s.startedAt, s.stoppedAt)),
          h("td", { class: "muted" }, s.reason || ""))))));
      swap(params, keyValues("Parameters", Object.entries(run.parameters || {}), "run-parameters"),
        run.statusReason ? h("section", { class: "panel", style: "margin-top:16px" }, h("div", { class: "panel-head" }, h("h2", {}, "Reason")),
          h("div", { class: "body" }, run.statusReason)) : null);
    },
  };
}

async function runAction(run, action) {
  const cancel = action === "cancel";
  const answer = await confirmAction({
    title: cancel ? `Cancel run of ${run.workflowName}?` : `Redrive run of ${run.workflowName}?`,
    text: cancel ? "Every step job still running is terminated; steps not started will not run."
      : "Failed, cancelled and never-run steps run again; succeeded steps keep their results.",
    action: cancel ? "Cancel run" : "Redrive",
    reason: cancel ? "Cancelled from the console" : undefined,
  });
  if (answer === null) return;
  try {
    await api.workflows("POST", `runs/${encodeURIComponent(run.runId)}/${action}`, cancel ? { reason: answer } : {});
    toast(cancel ? "Cancelling the run" : "Redriving the run");
    refreshNow();
  } catch (error) {
    toast(error.message, true);
  }
}

// --- sign-in, theme, keyboard, feed -------------------------------------------------------------------
function signIn(message) {
  const dialog = document.getElementById("login");
  const error = document.getElementById("login-error");
  error.textContent = api.credentials() ? message || "" : "";
  if (dialog.open) return;
  dialog.showModal();
  dialog.querySelector("input[name=accessKeyId]").focus();
}

function setupSignIn() {
  const dialog = document.getElementById("login");
  const form = document.getElementById("login-form");
  dialog.addEventListener("cancel", (e) => e.preventDefault()); // nothing to show without signing in
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const creds = {
      accessKeyId: String(data.get("accessKeyId")).trim(),
      secretAccessKey: String(data.get("secretAccessKey")),
      region: String(data.get("region")).trim() || "us-east-1",
    };
    api.saveCredentials(creds);
    try {
      await api.batch("DescribeJobQueues", { maxResults: 1 });
    } catch (error) {
      if (error instanceof api.ApiError && error.isAuth) {
        api.saveCredentials(null);
        document.getElementById("login-error").textContent = error.message;
        return;
      }
    }
    dialog.close();
    document.getElementById("signout").hidden = false;
    feed?.reconnect();
    refreshNow();
  });
  document.getElementById("signout").addEventListener("click", () => {
    api.saveCredentials(null);
    location.reload();
  });
  document.getElementById("signout").hidden = !api.credentials();
}

function setupTheme() {
  const root = document.documentElement;
  document.getElementById("theme").addEventListener("click", toggleTheme);
  const system = matchMedia("(prefers-color-scheme: dark)");
  // Until the user picks one, the page follows the system's setting as it changes.
  system.addEventListener("change", () => {
    let chosen = null;
    try { chosen = localStorage.getItem("openbatch.console.theme"); } catch { /* private mode */ }
    if (!chosen) root.dataset.theme = system.matches ? "dark" : "light";
  });
  function toggleTheme() {
    root.dataset.theme = root.dataset.theme === "dark" ? "light" : "dark";
    try { localStorage.setItem("openbatch.console.theme", root.dataset.theme); } catch { /* private mode */ }
  }
  return toggleTheme;
}

function setupSearch() {
  const form = document.getElementById("search");
  const input = document.getElementById("search-input");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.blur();
    // A job id (a UUID, or an array child's UUID:index) opens the job; anything else searches names.
    if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(:\d+)?$/i.test(text)) location.hash = `#/jobs/${text}`;
    else {
      const queue = new URLSearchParams(location.hash.split("?")[1] || "").get("queue");
      location.hash = `#/jobs?${queue ? `queue=${encodeURIComponent(queue)}&` : ""}name=${encodeURIComponent(text.includes("*") ? text : text + "*")}`;
    }
  });
  return input;
}

function setupKeys(searchInput, toggleTheme) {
  let prefix = null;
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (target.closest("input, select, textarea, dialog[open]")) {
      if (event.key === "Escape" && target === searchInput) searchInput.blur();
      return;
    }
    if (prefix === "g") {
      prefix = null;
      const to = { d: "#/", j: "#/jobs", w: "#/workflows" }[event.key];
      if (to) {
        event.preventDefault();
        location.hash = to;
      }
      return;
    }
    if (event.key === "/") {
      event.preventDefault();
      searchInput.focus();
      searchInput.select();
    } else if (event.key === "g") {
      prefix = "g";
      setTimeout(() => (prefix = null), 1500);
    } else if (event.key === "t") {
      toggleTheme();
    } else if (event.key === "r") {
      refreshNow();
    } else if (event.key === "?") {
      document.getElementById("help").showModal();
    }
  });
}

function setLive(state) {
  feedState = state;
  const node = document.getElementById("live");
  node.dataset.state = state;
  node.querySelector(".live-text").textContent = state === "live" ? "live" : state === "connecting" ? "connecting" : "polling";
}

function start() {
  setupSignIn();
  const toggleTheme = setupTheme();
  const searchInput = setupSearch();
  setupKeys(searchInput, toggleTheme);
  window.addEventListener("hashchange", show);
  feed = api.openFeed({
    onChanges: (changes) => changed(changes),
    onResync: () => changed(null),
    onState: setLive,
  });
  // Without the feed, poll; with it, still refresh now and then (times shown as "ago" move on).
  setInterval(() => {
    const age = Date.now() - lastRefresh;
    if ((feedState !== "live" && age > 4000) || age > 30000) changed(null);
  }, 2000);
  show();
}

start();
