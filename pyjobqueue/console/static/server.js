// The data source of `pyjobqueue console`: the server's JSON API and its server-sent
// events feed the view that the browser console uses too (view.js). The list shows one
// page of the queue (newest first, keyset paging on the job id) with the filters of the
// form; the live stream moves its rows, adds new jobs on the first page, and brings the
// counts, the chart, the schedules and the servers.
import { ConsoleView } from "./view.js";

const ACTION_HEADERS = { "Content-Type": "application/json", "X-Pyjobqueue-Console": "1" };

// A `?token=` in the address is now a cookie (the server set it): keep it out of the
// address bar, the history and screenshots.
const address = new URL(location.href);
if (address.searchParams.has("token")) {
  address.searchParams.delete("token");
  history.replaceState(null, "", address);
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  const text = await response.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = { error: text.trim() };
  }
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

const post = (name, body = {}) => api(`api/actions/${name}`, { method: "POST", headers: ACTION_HEADERS, body: JSON.stringify(body) });

const $ = (selector) => document.querySelector(selector);

class ServerSource {
  constructor(state) {
    this.state = state;
    this.pageSize = state.page_size;
    this.filter = { status: "", kind: "", id: "", run: "" };
    this.newer = []; // the `before` of each page left by "Older", to come back
    this.before = null; // null: the first page (new jobs appear on it)
    this.next = null; // the `before` of the next older page, when there is one
    this.loading = 0;
    this.view = new ConsoleView($("#app"), [], state.read_only ? {} : this.actions());
    this.view.setMatcher((job) => this.matches(job), "No jobs in this queue.");
  }

  actions() {
    const view = () => this.view;
    return {
      abort: (id) => post("abort", { id }),
      retry: (id) => post("retry", { id }),
      disable: (id) => post("disable", { id }),
      remove: async (id) => {
        if (await view().confirm(`Delete job #${id}? Its input, output and traceback are lost.`)) await post("delete", { id });
      },
      abortRun: async (runId) => {
        if (await view().confirm(`Abort every unfinished job of run ${runId}?`)) await post("abort_run", { run_id: runId });
      },
      setPaused: (paused) => post(paused ? "pause" : "resume"),
    };
  }

  // -- the page of jobs ------------------------------------------------------------------

  matches(job) {
    const filter = this.filter;
    if (filter.id) return job.id === Number(filter.id);
    if (filter.run) return job.job_run_id === filter.run;
    return (!filter.status || job.status === filter.status) && (!filter.kind || job.kind === filter.kind);
  }

  query() {
    const params = new URLSearchParams();
    if (this.filter.id) params.set("id", this.filter.id);
    else if (this.filter.run) params.set("run", this.filter.run);
    else {
      if (this.filter.status) params.set("status", this.filter.status);
      if (this.filter.kind) params.set("kind", this.filter.kind);
      if (this.before !== null) params.set("before", String(this.before));
      params.set("limit", String(this.pageSize));
    }
    return params;
  }

  async load() {
    const loading = ++this.loading;
    const since = this.view.mark();
    const page = await api(`api/jobs?${this.query()}`);
    if (loading !== this.loading) return; // a newer load started meanwhile
    this.next = page.next;
    const filter = this.filter;
    const filtered = Boolean(filter.status || filter.kind || filter.id || filter.run);
    this.view.emptyText = filtered ? "No jobs match this filter." : "No jobs in this queue.";
    this.view.jobs(JSON.stringify(page.jobs), since);
    this.showPager();
    document.body.dataset.ready = "true";
  }

  reload() {
    this.load().catch((error) => this.view.toast(`cannot read the jobs: ${error.message}`));
  }

  showPager() {
    const lookup = Boolean(this.filter.id || this.filter.run);
    $("#newer").disabled = lookup || this.before === null;
    $("#older").disabled = lookup || this.next === null;
    const number = this.newer.length + 1;
    $("#page-label").textContent = lookup ? "lookup" : `page ${number}`;
  }

  setFilter(changes) {
    Object.assign(this.filter, changes);
    this.before = null;
    this.newer = [];
    this.view.setMatcher((job) => this.matches(job));
    this.reload();
  }

  // A job as it now is, from the stream: its row changes; a new job that belongs on this
  // page (the first, or between this page's ids) gets one; the page keeps its size.
  job(jobJson) {
    const job = JSON.parse(jobJson);
    const rows = this.view.rows;
    if (!rows.has(job.id)) {
      if (!this.matches(job)) return;
      if (this.before !== null && job.id >= this.before) return;
      const ids = [...rows.keys()];
      if (this.before !== null && ids.length && job.id < Math.min(...ids)) return;
    }
    this.view.job(jobJson);
    this.trim();
  }

  trim() {
    const shown = [...this.view.rows.values()].filter((row) => !row.node.hidden).map((row) => row.job.id);
    if (this.filter.run || shown.length <= this.pageSize) return;
    shown.sort((a, b) => b - a);
    const dropped = shown.slice(this.pageSize);
    this.view.removed(dropped);
    this.next = shown[this.pageSize - 1];
    this.showPager();
  }

  // -- the rest of the page ----------------------------------------------------------------

  summary(summary) {
    const view = this.view;
    // Fewer jobs than before: some were deleted (a purge, a server's cleanup, another
    // console), which no event announces. Read this page again.
    const total = Object.values(summary.counts).reduce((a, b) => a + b, 0);
    if (this.total !== undefined && total < this.total) this.reload();
    this.total = total;
    view.counts(JSON.stringify(summary.counts));
    view.schedules(JSON.stringify(summary.schedules));
    view.servers(JSON.stringify(summary.servers));
    view.chart(JSON.stringify(summary.chart));
    view.paused(summary.paused);
    const select = $("#kind-filter");
    const known = new Set([...select.options].map((option) => option.value));
    for (const kind of summary.kinds) {
      if (!known.has(kind)) select.append(new Option(kind, kind));
    }
  }

  connection(role, text) {
    const badge = $("#leader-badge");
    badge.dataset.role = role;
    badge.querySelector(".label").textContent = text;
  }

  follow() {
    const events = new EventSource("api/events");
    events.addEventListener("open", () => {
      this.connection("leader", "Live");
      this.reload(); // what changed while the stream was down
    });
    events.addEventListener("error", () => {
      if (events.readyState === EventSource.CLOSED) {
        this.connection("error", "Disconnected");
        this.view.toast("the live stream was refused; reload the page");
      } else {
        this.connection("standby", "Reconnecting…");
      }
    });
    events.addEventListener("job", (event) => this.job(event.data));
    events.addEventListener("progress", (event) => {
      const step = JSON.parse(event.data);
      this.view.progress(step.id, step.progress, step.message);
    });
    events.addEventListener("paused", (event) => this.view.paused(JSON.parse(event.data).paused));
    events.addEventListener("summary", (event) => this.summary(JSON.parse(event.data)));
    events.addEventListener("deleted", (event) => {
      const { ids } = JSON.parse(event.data);
      if (ids) this.view.removed(ids);
      else this.reload();
    });
    window.addEventListener("pagehide", () => events.close());
  }

  // -- the controls -----------------------------------------------------------------------

  wire() {
    $("#status-filter").addEventListener("change", (event) => this.setFilter({ status: event.target.value, id: "", run: "" }));
    $("#kind-filter").addEventListener("change", (event) => this.setFilter({ kind: event.target.value, id: "", run: "" }));
    $("#older").addEventListener("click", () => {
      if (this.next === null) return;
      this.newer.push(this.before);
      this.before = this.next;
      this.reload();
    });
    $("#newer").addEventListener("click", () => {
      if (!this.newer.length) return;
      this.before = this.newer.pop();
      this.reload();
    });
    $("#lookup-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const id = $("#lookup-id").value.trim().replace(/^#/, "");
      const run = $("#lookup-run").value.trim();
      if (id && !/^\d+$/.test(id)) {
        this.view.toast("a job id is a whole number");
        return;
      }
      this.setFilter({ id, run: id ? "" : run });
    });
    $("#lookup-clear").addEventListener("click", () => {
      $("#lookup-id").value = "";
      $("#lookup-run").value = "";
      this.setFilter({ id: "", run: "" });
    });
    const purge = $("#purge-box");
    purge.hidden = this.state.read_only;
    $("#purge-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.view.act(() => this.purge());
    });
  }

  async purge() {
    const form = $("#purge-form");
    const statuses = [...form.querySelectorAll('input[name="status"]:checked')].map((box) => box.value);
    const hours = Number(form.elements.hours.value);
    if (!statuses.length) throw new Error("choose the statuses to purge");
    const what = statuses.map((status) => status.toLowerCase()).join(", ");
    if (!(await this.view.confirm(`Delete every ${what} job that finished more than ${hours} h ago? This cannot be undone.`))) return;
    const { result } = await post("purge", { statuses, older_than_seconds: hours * 3600 });
    this.view.toast(`${result.toLocaleString("en")} finished job${result === 1 ? "" : "s"} deleted`);
  }
}

async function main() {
  const state = await api("api/state");
  $("#queue-name").textContent = state.queue;
  $("#storage-label").textContent = `${state.storage} · live from the storage's event feed`;
  document.title = `${state.queue} · pyjobqueue console`;
  $("#read-only").hidden = !state.read_only;
  const source = new ServerSource(state);
  source.wire();
  source.summary(state.summary);
  source.follow();
}

main().catch((error) => {
  const banner = $("#fatal");
  banner.textContent = `The console could not start: ${error.message || error}`;
  banner.hidden = false;
  console.error(banner.textContent);
});
