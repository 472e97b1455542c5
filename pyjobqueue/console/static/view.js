// The console's view: plain DOM, no framework, shared by both consoles. A data source
// feeds it: in the browser console, Python under Pyodide (web/py/console_page.py); in
// `pyjobqueue console`, the HTTP API and its server-sent events (server.js). Both call
// jobs(), job(), progress(), counts() and schedules() with JSON text and paused() with a
// boolean; the server's also servers(), chart() and removed(). The buttons call back into
// the actions object the source passes in: a button whose action is missing (a read-only
// console, or one that cannot do it) is never shown.

const ACTIVE = new Set(["WAITING", "PENDING", "PROCESSING", "ABORTING"]);
// Not started yet: a job waiting for other jobs (depends_on), or for a worker.
const NOT_STARTED = new Set(["WAITING", "PENDING"]);
const FINISHED = new Set(["COMPLETED", "FAILED", "DISABLED"]);
const FILTERS = {
  all: () => true,
  active: (job) => ACTIVE.has(job.status),
  completed: (job) => job.status === "COMPLETED",
  failed: (job) => job.status === "FAILED" || job.status === "DISABLED",
};
const STATUS_LABELS = {
  WAITING: "waiting",
  PENDING: "pending",
  PROCESSING: "running",
  ABORTING: "aborting",
  COMPLETED: "completed",
  FAILED: "failed",
  DISABLED: "disabled",
};

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

function clock(iso) {
  return iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) : "";
}

function seconds(fromIso, toIso) {
  const ms = new Date(toIso) - new Date(fromIso);
  return ms < 1000 ? `${Math.max(ms, 0)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function describeInput(input) {
  if (input === null || typeof input !== "object") return JSON.stringify(input);
  const parts = Object.entries(input)
    .filter(([key]) => key !== "task" && key !== "index")
    .map(([key, value]) => `${key}=${typeof value === "number" ? value.toLocaleString("en") : JSON.stringify(value)}`);
  return parts.join(" · ");
}

export class ConsoleView {
  constructor(root, tasks, actions) {
    this.root = root;
    this.tasks = new Map(tasks.map((task) => [task.name, task]));
    this.kinds = new Map(tasks.map((task) => [task.kind, task]));
    this.isPaused = null; // unknown until the source has read the queue's flag
    this.pauseSwitch = root.querySelector("#pause-switch");
    this.actions = actions;
    this.rows = new Map(); // job id -> { job, node, parts, changed }
    this.clock = 0; // counts row changes, so a stale snapshot cannot undo a newer one
    this.filter = "all";
    this.matches = () => true; // the source's own filter (the server console's)
    this.list = root.querySelector("#job-list");
    this.empty = root.querySelector("#empty");
    this.listNote = root.querySelector("#list-note"); // the browser console's only
    this.perStatus = null; // how many jobs of each status the source lists at most
    this.emptyText = "No jobs yet: submit one on the left.";
    if (tasks.length) this.buildForm(tasks);
    this.buildFilters();
    this.on("#clear-finished", "clearFinished", () => this.act(() => actions.clearFinished()));
    this.on("#submit-mix", "submitMix", () => this.act(() => actions.submitMix()));
    this.pauseSwitch.addEventListener("click", () => this.togglePause());
    if (!actions.setPaused) this.pauseSwitch.title = "The queue's state; this console cannot change it (read-only)";
    this.dialog = root.querySelector("#confirm");
  }

  // Wire a button to an action, or hide it when the source has no such action.
  on(selector, action, listener) {
    const button = this.root.querySelector(selector);
    if (!button) return;
    button.hidden = !this.actions[action];
    button.addEventListener("click", listener);
  }

  // Ask before an action that loses data: the page's <dialog id="confirm">. Resolves
  // true when confirmed (at once where the page has no dialog).
  confirm(message) {
    const dialog = this.dialog;
    if (!dialog) return Promise.resolve(true);
    dialog.querySelector(".confirm-text").textContent = message;
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
      dialog.returnValue = "";
      dialog.showModal();
    });
  }

  // -- the submit form -------------------------------------------------------------------

  buildForm(tasks) {
    const picker = this.root.querySelector("#task-picker");
    for (const task of tasks) {
      const button = el("button", {
        type: "button",
        class: "task-choice",
        "data-task": task.name,
        text: task.title,
        onclick: () => this.chooseTask(task.name),
      });
      picker.append(button);
    }
    this.root.querySelector("#submit-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.submitForm();
    });
    this.chooseTask(tasks[0].name);
  }

  chooseTask(name) {
    const task = this.tasks.get(name);
    this.task = task;
    for (const button of this.root.querySelectorAll(".task-choice")) {
      button.classList.toggle("selected", button.dataset.task === name);
      button.setAttribute("aria-pressed", String(button.dataset.task === name));
    }
    this.root.querySelector("#task-description").textContent = task.description;
    const params = this.root.querySelector("#task-params");
    params.replaceChildren(
      ...task.params.map((param) =>
        el(
          "label",
          { class: "field" },
          el("span", { text: param.label }),
          el("input", {
            type: "number",
            name: param.name,
            value: String(param.default),
            min: String(param.min),
            max: String(param.max),
            step: "1",
            required: "",
          }),
        ),
      ),
    );
    this.root.querySelector("#max-retries").value = String(task.max_retries);
  }

  submitForm() {
    const form = this.root.querySelector("#submit-form");
    const params = {};
    for (const param of this.task.params) {
      params[param.name] = Number(form.elements[param.name].value);
    }
    const request = {
      task: this.task.name,
      params,
      count: Number(form.elements.count.value),
      max_retries: Number(form.elements.max_retries.value),
      // As typed (Python checks it): an int of up to 32 bits, where Number() would
      // turn an empty field into 0.
      priority: form.elements.priority.value,
    };
    this.act(() => this.actions.submit(JSON.stringify(request)));
  }

  async act(action) {
    try {
      await action();
    } catch (error) {
      this.toast(String(error.message || error).trim().split("\n").pop());
    }
  }

  toast(message) {
    const toast = el("div", { class: "toast", role: "alert", text: message });
    this.root.querySelector("#toasts").append(toast);
    setTimeout(() => toast.remove(), 6000);
  }

  // -- pause and resume -----------------------------------------------------------------

  // The queue's stored flag, from Python: read at start and followed through the
  // queue_paused / queue_resumed events of every tab.
  paused(isPaused) {
    this.isPaused = Boolean(isPaused);
    const toggle = this.pauseSwitch;
    toggle.dataset.paused = String(this.isPaused);
    toggle.setAttribute("aria-checked", String(this.isPaused));
    toggle.querySelector(".label").textContent = this.isPaused ? "Queue paused" : "Queue running";
    toggle.disabled = this.pausing === true || !this.actions.setPaused;
    document.body.dataset.paused = String(this.isPaused);
    for (const row of this.rows.values()) {
      if (row.job.status === "PENDING") this.fill(row); // "queue paused" or back
    }
  }

  async togglePause() {
    if (this.isPaused === null || this.pausing) return;
    this.pausing = true;
    this.pauseSwitch.disabled = true;
    try {
      await this.act(() => this.actions.setPaused(!this.isPaused));
    } finally {
      this.pausing = false;
      this.pauseSwitch.disabled = false;
    }
  }

  // -- filters and counts ---------------------------------------------------------------

  buildFilters() {
    for (const button of this.root.querySelectorAll(".filter")) {
      button.addEventListener("click", () => {
        this.filter = button.dataset.filter;
        for (const other of this.root.querySelectorAll(".filter")) {
          other.classList.toggle("selected", other === button);
        }
        for (const row of this.rows.values()) this.applyFilter(row);
        this.updateEmpty();
      });
    }
  }

  applyFilter(row) {
    row.node.hidden = !FILTERS[this.filter](row.job) || !this.matches(row.job);
  }

  // The source's filter (a predicate on a job): rows that stop matching it are hidden.
  setMatcher(matches, emptyText) {
    this.matches = matches;
    if (emptyText) this.emptyText = emptyText;
    for (const row of this.rows.values()) this.applyFilter(row);
    this.updateEmpty();
  }

  updateEmpty() {
    const visible = [...this.rows.values()].some((row) => !row.node.hidden);
    this.empty.hidden = visible;
    this.empty.textContent = this.rows.size ? "No jobs match this filter." : this.emptyText;
  }

  // Rows of jobs that were deleted (all rows when `ids` is null).
  removed(ids) {
    for (const [id, row] of this.rows) {
      if (ids === null || ids.includes(id)) {
        row.node.remove();
        this.rows.delete(id);
      }
    }
    this.updateEmpty();
  }

  // The source lists at most this many jobs of each status: counts() says when more
  // are stored, so that no job is left out silently.
  list_limit(perStatus) {
    this.perStatus = perStatus;
  }

  counts(countsJson) {
    const counts = JSON.parse(countsJson);
    if (this.listNote && this.perStatus !== null) {
      const over = Object.entries(counts).filter(([, count]) => count > this.perStatus);
      this.listNote.hidden = !over.length;
      this.listNote.textContent = over.length
        ? `Only the first ${this.perStatus.toLocaleString("en")} jobs of each status are listed: ` +
          over.map(([status, count]) => `${count.toLocaleString("en")} ${STATUS_LABELS[status] || status}`).join(", ") +
          " are stored. Python (window.pyodide) and the counts above see them all."
        : "";
    }
    const running = counts.PROCESSING + counts.ABORTING;
    const values = {
      pending: counts.PENDING + (counts.WAITING || 0),
      running,
      completed: counts.COMPLETED,
      failed: counts.FAILED + counts.DISABLED,
      total: Object.values(counts).reduce((a, b) => a + b, 0),
    };
    for (const [name, value] of Object.entries(values)) {
      this.root.querySelector(`[data-stat="${name}"]`).textContent = value.toLocaleString("en");
    }
  }

  // The servers whose heartbeat is alive (the server console).
  servers(serversJson) {
    const list = this.root.querySelector("#server-list");
    if (!list) return;
    const servers = JSON.parse(serversJson);
    list.replaceChildren(
      ...servers.map((server) =>
        el(
          "li",
          { class: "server", "data-server": server.server_id },
          el("span", { class: "server-host", text: server.pid === null ? server.host : `${server.host} · pid ${server.pid}` }),
          el("span", { class: "server-workers", text: `${server.worker_count} worker${server.worker_count === 1 ? "" : "s"}` }),
          el("span", { class: "server-kinds", text: server.kinds.length ? server.kinds.join(", ") : "any kind" }),
          el("span", { class: "server-seen", text: `since ${clock(server.started_at)} · seen ${clock(server.last_seen)}` }),
        ),
      ),
    );
    const none = this.root.querySelector("#no-servers");
    if (none) none.hidden = servers.length > 0;
  }

  // Jobs finished per bucket as a small bar chart (completed up, failed in red on top),
  // with the throughput and the failure rate over the last minutes.
  chart(chartJson) {
    const svg = this.root.querySelector("#chart");
    if (!svg) return;
    const chart = JSON.parse(chartJson);
    const buckets = chart.buckets;
    const highest = Math.max(1, ...buckets.map((b) => b.completed + b.failed));
    const width = 300;
    const height = 60;
    const step = width / Math.max(buckets.length, 1);
    const bars = [];
    buckets.forEach((bucket, index) => {
      const x = index * step;
      const done = (bucket.completed / highest) * height;
      const failed = (bucket.failed / highest) * height;
      const title = `${bucket.completed} completed, ${bucket.failed} failed, ${bucket.retried} retried`;
      bars.push(`<rect class="bar-completed" x="${x}" y="${height - done}" width="${Math.max(step - 1, 1)}" height="${done}"><title>${title}</title></rect>`);
      bars.push(`<rect class="bar-failed" x="${x}" y="${height - done - failed}" width="${Math.max(step - 1, 1)}" height="${failed}"><title>${title}</title></rect>`);
    });
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.innerHTML = bars.join("");
    const span = chart.window_seconds < 90 ? `${chart.window_seconds} s` : `${Math.round(chart.window_seconds / 60)} min`;
    const text = (name, value) => {
      const node = this.root.querySelector(`[data-stat="${name}"]`);
      if (node) node.textContent = value;
    };
    text("per-minute", chart.per_minute.toLocaleString("en"));
    text("failure-rate", chart.failure_rate === null ? "–" : `${(chart.failure_rate * 100).toFixed(1)}%`);
    const caption = this.root.querySelector("#chart-caption");
    if (caption) caption.textContent = `jobs finished per ${chart.bucket_seconds} s; rates over the last ${span}`;
  }

  // The queue's schedules (as storage keeps them: every tab's servers share them), with
  // their next tick; hidden while the queue has none.
  schedules(schedulesJson) {
    const schedules = JSON.parse(schedulesJson);
    const section = this.root.querySelector("#schedules");
    const list = section.querySelector("ul");
    section.hidden = schedules.length === 0;
    list.replaceChildren(
      ...schedules.map((schedule) =>
        el(
          "li",
          { class: "schedule", "data-schedule": schedule.name },
          el("span", { class: "schedule-name", text: schedule.name }),
          el("span", { class: "schedule-next", text: `next tick ${clock(schedule.next_tick)}` }),
          el("span", {
            class: "schedule-last",
            text: schedule.last_tick ? `last ${clock(schedule.last_tick)}` : "not run yet",
          }),
        ),
      ),
    );
  }

  serverStats(stats) {
    const text = (name, value) => {
      const node = this.root.querySelector(`[data-stat="${name}"]`);
      if (node) node.textContent = value;
    };
    if (!stats) {
      text("retried", "–");
      text("average", "–");
      return;
    }
    text("retried", stats.retried_jobs.toLocaleString("en"));
    const average = stats.average_processing_time;
    text("average", average === null ? "–" : average < 1000 ? `${Math.round(average)} ms` : `${(average / 1000).toFixed(1)} s`);
  }

  // -- the job list ---------------------------------------------------------------------

  mark() {
    return this.clock;
  }

  // The whole list, as read from storage after mark() returned `since`: rows that
  // changed since then are newer than this snapshot and are left as they are.
  jobs(jobsJson, since) {
    const jobs = JSON.parse(jobsJson);
    const listed = new Set(jobs.map((job) => job.id));
    for (const [id, row] of this.rows) {
      if (!listed.has(id) && row.changed <= since) {
        row.node.remove();
        this.rows.delete(id);
      }
    }
    for (const job of jobs) {
      const row = this.rows.get(job.id);
      if (!row || row.changed <= since) this.upsert(job);
    }
    this.updateEmpty();
  }

  job(jobJson) {
    this.upsert(JSON.parse(jobJson));
    this.updateEmpty();
  }

  progress(jobId, progress, message) {
    const row = this.rows.get(jobId);
    if (!row || FINISHED.has(row.job.status)) return;
    row.job.progress = progress;
    row.job.progress_message = message;
    row.changed = ++this.clock;
    if (row.job.status === "PENDING") {
      // Its job_start (and the re-read it triggers) may still be on the way: a claim
      // starts a new attempt.
      row.job.status = "PROCESSING";
      row.job.run_attempts += 1;
    }
    this.fill(row);
  }

  upsert(job) {
    let row = this.rows.get(job.id);
    if (!row) {
      row = this.createRow(job);
      this.rows.set(job.id, row);
      this.insertInOrder(row);
    }
    const previous = row.job;
    if (previous !== job && job.status === "PROCESSING" && previous.status === "PROCESSING" && previous.run_attempts === job.run_attempts && previous.progress > job.progress) {
      // A storage read that started before the latest progress event: keep the newer progress.
      job.progress = previous.progress;
      job.progress_message = previous.progress_message;
    }
    row.job = job;
    row.changed = ++this.clock;
    this.fill(row);
    this.applyFilter(row);
  }

  insertInOrder(row) {
    // Newest first: before the first row with a smaller id.
    let before = null;
    for (const [id, other] of this.rows) {
      if (id < row.job.id && (before === null || id > before.job.id)) before = other;
    }
    this.list.insertBefore(row.node, before ? before.node : null);
  }

  // -- one job in full ----------------------------------------------------------------

  // Every stored field of a job as the view last heard of it (input, output and error in
  // full, times, attempts, what it depends on), in a dialog made on first use.
  showDetail(id) {
    const row = this.rows.get(id);
    if (!row) return;
    let dialog = document.querySelector("#job-detail");
    if (!dialog) {
      dialog = el(
        "dialog",
        { id: "job-detail", class: "job-detail", "aria-label": "job detail" },
        el("div", { class: "detail-head" }, el("h2", {}), el("button", { type: "button", class: "secondary close", text: "Close", onclick: () => dialog.close() })),
        el("dl", {}),
      );
      document.body.append(dialog);
    }
    const job = row.job;
    dialog.querySelector("h2").textContent = `Job #${job.id} · ${STATUS_LABELS[job.status] || job.status}`;
    const list = dialog.querySelector("dl");
    list.replaceChildren();
    for (const [name, value] of Object.entries(job)) {
      const text = value === null || value === undefined ? "–" : typeof value === "string" ? value : JSON.stringify(value, null, 2);
      list.append(el("dt", { text: name }), el("dd", {}, el("pre", { text })));
    }
    if (!dialog.open) dialog.showModal();
  }

  createRow(job) {
    const parts = {
      status: el("span", { class: "status" }),
      attempts: el("span", { class: "attempts" }),
      time: el("span", { class: "time" }),
      bar: el("div", { class: "bar" }),
      percent: el("span", { class: "percent" }),
      message: el("span", { class: "message" }),
      result: el("pre", { class: "result" }),
      kind: el("span", { class: "job-kind" }),
      priority: el("span", { class: "job-priority" }),
      traceback: el("pre", { class: "traceback-text" }),
      abort: el("button", { type: "button", class: "action abort", text: "Abort" }),
      retry: el("button", { type: "button", class: "action retry", text: "Retry" }),
      disable: el("button", { type: "button", class: "action disable", text: "Disable" }),
      remove: el("button", { type: "button", class: "action delete", text: "Delete" }),
      batch: el("button", { type: "button", class: "batch" }),
    };
    const task = this.kinds.get(job.kind) || this.tasks.get(job.input && job.input.task);
    const inputTask = job.input && typeof job.input === "object" ? job.input.task : undefined;
    const title = task ? task.title : inputTask !== undefined ? String(inputTask) : job.kind || "job";
    const progress = el("div", { class: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100" }, parts.bar);
    const node = el(
      "li",
      { class: "job", "data-job-id": String(job.id) },
      el(
        "div",
        { class: "job-head" },
        el("button", {
          type: "button",
          class: "job-id",
          text: `#${job.id}`,
          title: "Every field of this job",
          onclick: () => this.showDetail(job.id),
        }),
        el("span", { class: "job-task", text: title }),
        parts.kind,
        parts.priority,
        el("span", { class: "job-input", text: describeInput(job.input) }),
        parts.batch,
        el("span", { class: "spacer" }),
        parts.time,
        parts.attempts,
        parts.status,
      ),
      el("div", { class: "job-progress" }, progress, parts.percent),
      el("div", { class: "job-foot" }, parts.message, el("span", { class: "spacer" }), parts.retry, parts.disable, parts.abort, parts.remove),
      parts.result,
    );
    // Collapsed until opened; fill() changes only its text, so it stays open or closed.
    parts.tracebackBox = el("details", { class: "traceback" }, el("summary", { text: "Traceback" }), parts.traceback);
    node.append(parts.tracebackBox);
    parts.progress = progress;
    const actions = this.actions;
    parts.abort.addEventListener("click", () => this.act(() => actions.abort(job.id)));
    parts.retry.addEventListener("click", () => this.act(() => actions.retry(job.id)));
    parts.batch.addEventListener("click", () => this.act(() => actions.abortRun(job.job_run_id)));
    parts.disable.addEventListener("click", () => this.act(() => actions.disable(job.id)));
    parts.remove.addEventListener("click", () => this.act(() => actions.remove(job.id)));
    return { job, node, parts };
  }

  fill(row) {
    const { job, node, parts } = row;
    node.dataset.status = job.status;
    parts.status.textContent = STATUS_LABELS[job.status] || job.status.toLowerCase();
    const attempts = job.max_retries + 1;
    const plural = (n) => `${n} attempt${n === 1 ? "" : "s"}`;
    // A finished job says how many attempts it took, not how many it may still get.
    if (FINISHED.has(job.status)) {
      parts.attempts.textContent = job.run_attempts ? `after ${plural(job.run_attempts)}` : "";
    } else {
      parts.attempts.textContent = job.run_attempts
        ? `attempt ${job.run_attempts} of ${attempts}`
        : `up to ${plural(attempts)}`;
    }
    parts.time.textContent = this.timing(job);
    // A job stored without a kind (by an older console, or a submit() without kind=)
    // runs as ConsoleJob, the first class of the tab's server.
    parts.kind.textContent = job.kind || "no kind";
    parts.kind.title = job.kind ? `kind ${job.kind}` : "stored without a kind: runs as ConsoleJob";
    parts.kind.classList.toggle("none", !job.kind);
    parts.priority.textContent = `priority ${job.priority}`;
    parts.priority.dataset.priority = String(job.priority);
    const percent = job.status === "COMPLETED" ? 100 : Math.round(job.progress);
    parts.bar.style.width = `${percent}%`;
    parts.progress.setAttribute("aria-valuenow", String(percent));
    parts.percent.textContent = `${percent}%`;
    parts.message.textContent = this.message(job);
    const can = this.actions;
    parts.abort.hidden = !can.abort || !ACTIVE.has(job.status) || job.status === "ABORTING";
    parts.retry.hidden = !can.retry || !(job.status === "FAILED" || job.status === "DISABLED");
    parts.disable.hidden = !can.disable || !NOT_STARTED.has(job.status);
    parts.remove.hidden = !can.remove || !(FINISHED.has(job.status) || NOT_STARTED.has(job.status));
    parts.batch.hidden = !job.job_run_id;
    parts.batch.disabled = !can.abortRun;
    parts.batch.textContent = job.job_run_id || "";
    parts.batch.title = can.abortRun ? `abort every unfinished job of ${job.job_run_id}` : `job run ${job.job_run_id}`;
    if (job.status === "COMPLETED") {
      parts.result.className = "result output";
      parts.result.textContent = JSON.stringify(job.output);
    } else if (job.error) {
      parts.result.className = "result error";
      parts.result.textContent = `${job.error_code}: ${job.error}`;
    } else {
      parts.result.className = "result";
      parts.result.textContent = "";
    }
    parts.result.hidden = !parts.result.textContent;
    // The last failed attempt's traceback: on a failed job, and on one waiting to retry.
    parts.traceback.textContent = job.error_traceback || "";
    parts.tracebackBox.hidden = !job.error_traceback;
  }

  timing(job) {
    if (FINISHED.has(job.status) && job.completed_at && job.last_ran_at) {
      return `${clock(job.completed_at)} · took ${seconds(job.last_ran_at, job.completed_at)}`;
    }
    if (job.status === "PENDING" && job.run_after && new Date(job.run_after) > Date.now()) {
      return `retry at ${clock(job.run_after)}`;
    }
    return clock(job.created_at);
  }

  message(job) {
    if (job.status === "WAITING") {
      const ids = (job.depends_on || []).map((id) => `#${id}`).join(", ");
      return `waiting for ${job.dependencies_left} of the jobs it depends on (${ids})`;
    }
    if (job.status === "PENDING") {
      if (this.isPaused) return "waiting: the queue is paused";
      return job.run_attempts ? "waiting to run again" : "waiting for a worker";
    }
    if (job.status === "ABORTING") return "aborting…";
    return job.progress_message || (job.status === "PROCESSING" ? "started" : "");
  }

  // -- the leader badge -----------------------------------------------------------------

  leader(state) {
    const badge = this.root.querySelector("#leader-badge");
    badge.dataset.role = state.role;
    badge.dataset.leaderTab = state.leaderTab || "";
    const label = badge.querySelector(".label");
    if (state.role === "leader") label.textContent = "Leader · this tab runs the jobs";
    else if (state.role === "standby") label.textContent = state.leaderTab ? `Standby · tab ${state.leaderTab} runs the jobs` : "Standby · waiting for the leader";
    else label.textContent = state.text || "Starting…";
  }
}
