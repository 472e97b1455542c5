// The console's view: plain DOM, no framework, shared by both consoles. A data source
// feeds it: in the browser console, Python under Pyodide (web/py/console_page.py); in
// `pyjobqueue console`, the HTTP API and its server-sent events (server.js).
//
// The job list shows one page of the queue at a time (newest first, keyset pages on the
// job id), never more than a page of rows, filtered by status and kind or found by job id
// or run id. The source hands list() a reader of pages (`readPage(query)`, see query())
// and, optionally, of one job (`readJob(id)`, for its detail); the view reads pages
// itself when the filter or the page changes, or when the source says that jobs were
// added. The source calls job(), progress(), counts() and schedules() with JSON text,
// paused() with a boolean, added() and removed(); the server's also servers() and
// chart(). The buttons call back into the actions object the source passes in: a button
// whose action is missing (a read-only console, or one that cannot do it) is never shown.

const ACTIVE = new Set(["WAITING", "PENDING", "PROCESSING", "ABORTING"]);
// Not started yet: a job waiting for other jobs (depends_on), or for a worker.
const NOT_STARTED = new Set(["WAITING", "PENDING"]);
const FINISHED = new Set(["COMPLETED", "FAILED", "DISABLED"]);
// A page that jobs left (they stopped matching its filter) is read again after this
// long, so that a busy queue costs one read a second at most.
const REFILL_DELAY_MS = 1000;
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
    this.list = root.querySelector("#job-list");
    this.empty = root.querySelector("#empty");
    this.emptyText = "No jobs yet: submit one on the left.";
    this.filter = { status: "", kind: "", id: "", run: "" };
    this.newer = []; // the `before` of each page left by "Older", to come back
    this.before = null; // null: the first page (new jobs appear on it)
    this.next = null; // the `before` of the next older page, when there is one
    this.loading = 0; // counts page reads: only the latest one is shown
    this.tally = []; // [kind, status, count] of every pair the queue holds
    this.knownKinds = new Set();
    if (tasks.length) this.buildForm(tasks);
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

  // -- counts ---------------------------------------------------------------------------

  // How many jobs of each (kind, status) the queue holds, as [kind, status, count] rows
  // (kind null: stored without one): the stats strip, the kinds to filter by, and how
  // many jobs the list's filter matches.
  counts(rowsJson) {
    this.tally = JSON.parse(rowsJson);
    const counts = { WAITING: 0, PENDING: 0, PROCESSING: 0, ABORTING: 0, COMPLETED: 0, FAILED: 0, DISABLED: 0 };
    for (const [kind, status, count] of this.tally) {
      counts[status] = (counts[status] || 0) + count;
      if (kind !== null) this.addKind(kind);
    }
    const values = {
      pending: counts.PENDING + counts.WAITING,
      running: counts.PROCESSING + counts.ABORTING,
      completed: counts.COMPLETED,
      failed: counts.FAILED + counts.DISABLED,
      total: Object.values(counts).reduce((a, b) => a + b, 0),
    };
    for (const [name, value] of Object.entries(values)) {
      this.root.querySelector(`[data-stat="${name}"]`).textContent = value.toLocaleString("en");
    }
    this.showPager();
  }

  // A kind the kind filter offers (every kind the queue holds, and the form's tasks').
  addKind(kind) {
    if (this.knownKinds.has(kind)) return;
    this.knownKinds.add(kind);
    const select = this.root.querySelector("#kind-filter");
    if (select) select.append(new Option(kind, kind));
  }

  // How many stored jobs the status and kind filters match (the counts say).
  matching() {
    const { status, kind } = this.filter;
    return this.tally
      .filter(([k, s]) => (!status || s === status) && (!kind || k === kind))
      .reduce((sum, [, , count]) => sum + count, 0);
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

  // Retried attempts and the average run time of completed jobs, as every tab derives
  // them from the stored jobs and their events (the browser console).
  stats(statsJson) {
    const stats = JSON.parse(statsJson);
    const text = (name, value) => {
      const node = this.root.querySelector(`[data-stat="${name}"]`);
      if (node) node.textContent = value;
    };
    text("retried", stats.retried_jobs.toLocaleString("en"));
    const average = stats.average_processing_time;
    text("average", average === null ? "–" : average < 1000 ? `${Math.round(average)} ms` : `${(average / 1000).toFixed(1)} s`);
  }

  // -- the job list: one page at a time ----------------------------------------------------

  // Start showing pages: `source.readPage(query)` resolves to {jobs, next} (next: the
  // `before` of the next older page, or null), `source.readJob(id)` (optional) to a job
  // or null, `source.pageSize` is the rows of a page, `source.emptyText` what an empty,
  // unfiltered queue says.
  showPages(source) {
    this.source = source;
    this.pageSize = source.pageSize;
    if (source.emptyText) this.emptyText = source.emptyText;
    this.wireListControls();
    return this.load(true);
  }

  // What to read: one job (id), a page of one run's jobs (run), or a page of the filter.
  query() {
    const { status, kind, id, run } = this.filter;
    if (id) return { id: Number(id) };
    if (run) return { run, before: this.before, limit: this.pageSize };
    return { status, kind, before: this.before, limit: this.pageSize };
  }

  isLookup() {
    return Boolean(this.filter.id || this.filter.run);
  }

  matches(job) {
    const filter = this.filter;
    if (filter.id) return job.id === Number(filter.id);
    if (filter.run) return job.job_run_id === filter.run;
    return (!filter.status || job.status === filter.status) && (!filter.kind || job.kind === filter.kind);
  }

  // Read the page the filter and the pager point at. `moved`: another page than the one
  // shown (every row goes); otherwise the same page again, where rows that changed
  // since the read began are newer than it and stay as they are.
  async load(moved = false) {
    if (!this.source) return; // not showing pages yet (showPages reads the first)
    const loading = ++this.loading;
    const since = moved ? Infinity : this.clock;
    const page = await this.source.readPage(this.query());
    if (loading !== this.loading) return; // a newer read started meanwhile
    this.next = page.next;
    this.runTotal = page.total ?? null; // how many jobs the run looked up has
    this.jobs(page.jobs, since);
    this.showPager();
  }

  reload(moved = false) {
    this.load(moved).catch((error) => this.toast(`cannot read the jobs: ${error.message || error}`));
  }

  // The ids of the jobs that have a row (JSON text), for the source to know which
  // jobs it needs to keep up to date.
  shown_ids() {
    return JSON.stringify([...this.rows.keys()]);
  }

  // Jobs were added to the queue: the first page shows them (a page further back, or a
  // job looked up by id, is left as it is).
  added() {
    if (this.before === null && !this.filter.id) this.reload();
  }

  setFilter(changes) {
    Object.assign(this.filter, changes);
    this.before = null;
    this.newer = [];
    this.reload(true);
  }

  wireListControls() {
    const $ = (selector) => this.root.querySelector(selector);
    for (const task of this.tasks.values()) this.addKind(task.kind);
    $("#status-filter").addEventListener("change", (event) => this.setFilter({ status: event.target.value, id: "", run: "" }));
    $("#kind-filter").addEventListener("change", (event) => this.setFilter({ kind: event.target.value, id: "", run: "" }));
    $("#older").addEventListener("click", () => {
      if (this.next === null) return;
      this.newer.push(this.before);
      this.before = this.next;
      this.reload(true);
    });
    $("#newer").addEventListener("click", () => {
      if (!this.newer.length) return;
      this.before = this.newer.pop();
      this.reload(true);
    });
    $("#lookup-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const id = $("#lookup-id").value.trim().replace(/^#/, "");
      const run = $("#lookup-run").value.trim();
      if (id && !/^\d+$/.test(id)) {
        this.toast("a job id is a whole number");
        return;
      }
      this.setFilter({ id, run: id ? "" : run });
    });
    $("#lookup-clear").addEventListener("click", () => {
      $("#lookup-id").value = "";
      $("#lookup-run").value = "";
      this.setFilter({ id: "", run: "" });
    });
  }

  // Which jobs of how many the list shows, and whether there are newer and older pages.
  showPager() {
    const label = this.root.querySelector("#page-label");
    if (!label || !this.source) return;
    const single = Boolean(this.filter.id);
    this.root.querySelector("#newer").disabled = single || this.before === null;
    this.root.querySelector("#older").disabled = single || this.next === null;
    const shown = this.rows.size;
    if (single) {
      label.textContent = shown ? `job #${this.filter.id}` : `no job #${this.filter.id}`;
      return;
    }
    const first = this.newer.length * this.pageSize + 1;
    const counted = this.filter.run ? (this.runTotal ?? 0) : this.matching();
    const total = Math.max(counted, first - 1 + shown);
    label.textContent = shown
      ? `${first.toLocaleString("en")}–${(first + shown - 1).toLocaleString("en")} of ${total.toLocaleString("en")}`
      : `0 of ${total.toLocaleString("en")}`;
    label.dataset.total = String(total);
  }

  updateEmpty() {
    this.empty.hidden = this.rows.size > 0;
    const filtered = Boolean(this.filter.status || this.filter.kind || this.isLookup());
    this.empty.textContent = filtered ? "No jobs match this filter." : this.emptyText;
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
    this.showPager();
  }

  mark() {
    return this.clock;
  }

  // A page as read after mark() returned `since`: rows that changed since then are newer
  // than this read and are left as they are.
  jobs(jobs, since) {
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

  // A job as it now is: its row changes; a job without a row gets one when it belongs on
  // this page (it matches the filter, and its id falls within the page, or on the first
  // page above it); the page keeps its size.
  job(jobJson) {
    const job = JSON.parse(jobJson);
    if (!this.rows.has(job.id)) {
      if (!this.matches(job)) return;
      if (this.before !== null && job.id >= this.before) return;
      if (this.rows.size >= this.pageSize && job.id < Math.min(...this.rows.keys())) return;
    }
    this.upsert(job);
    this.updateEmpty();
    this.trim();
  }

  trim() {
    const shown = [...this.rows.keys()];
    if (shown.length > this.pageSize) {
      shown.sort((a, b) => b - a);
      this.removed(shown.slice(this.pageSize));
      this.next = shown[this.pageSize - 1];
    }
    this.showPager();
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
    if (this.matches(job)) {
      this.fill(row);
      return;
    }
    // A job that no longer matches the filter (it moved on to another status) leaves
    // the page, which is read again soon if older jobs can fill it.
    row.node.remove();
    this.rows.delete(job.id);
    this.refillSoon();
  }

  refillSoon() {
    if (this.refill || this.next === null || this.rows.size >= this.pageSize) return;
    this.refill = setTimeout(() => {
      this.refill = null;
      this.reload();
    }, REFILL_DELAY_MS);
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
  async showDetail(id) {
    const row = this.rows.get(id);
    if (!row) return;
    const stored = this.source && this.source.readJob ? await this.source.readJob(id) : null;
    const job = stored || row.job;
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
          onclick: () => this.act(() => this.showDetail(job.id)),
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
