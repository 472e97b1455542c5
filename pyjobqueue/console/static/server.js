// The data source of `pyjobqueue console`: the server's JSON API and its server-sent
// events feed the view that the browser console uses too (view.js). The view reads the
// pages of its list through readPage (GET api/jobs); the live stream moves its rows,
// adds new jobs on the first page, and brings the counts, the chart, the schedules and
// the servers.
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
    this.emptyText = "No jobs in this queue.";
    this.view = new ConsoleView($("#app"), [], state.read_only ? {} : this.actions());
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

  // -- what the view reads ----------------------------------------------------------------

  // One page of the queue (or one job, or one run's jobs): view.js says which.
  async readPage(query) {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(query)) {
      if (value !== null && value !== undefined && value !== "") params.set(name, String(value));
    }
    const page = await api(`api/jobs?${params}`);
    document.body.dataset.ready = "true";
    return page;
  }

  async readJob(id) {
    const page = await api(`api/jobs?id=${id}`);
    return page.jobs[0] || null;
  }

  // -- the rest of the page ----------------------------------------------------------------

  summary(summary) {
    const view = this.view;
    // Fewer jobs than before: some were deleted (a purge, a server's cleanup, another
    // console), which no event announces. Read this page again.
    const total = Object.values(summary.counts).reduce((a, b) => a + b, 0);
    if (this.total !== undefined && total < this.total) view.reload();
    this.total = total;
    view.counts(JSON.stringify(summary.by_kind));
    view.schedules(JSON.stringify(summary.schedules));
    view.servers(JSON.stringify(summary.servers));
    view.chart(JSON.stringify(summary.chart));
    view.paused(summary.paused);
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
      this.view.reload(); // what changed while the stream was down
    });
    events.addEventListener("error", () => {
      if (events.readyState === EventSource.CLOSED) {
        this.connection("error", "Disconnected");
        this.view.toast("the live stream was refused; reload the page");
      } else {
        this.connection("standby", "Reconnecting…");
      }
    });
    events.addEventListener("job", (event) => this.view.job(event.data));
    events.addEventListener("progress", (event) => {
      const step = JSON.parse(event.data);
      this.view.progress(step.id, step.progress, step.message);
    });
    events.addEventListener("paused", (event) => this.view.paused(JSON.parse(event.data).paused));
    events.addEventListener("summary", (event) => this.summary(JSON.parse(event.data)));
    events.addEventListener("deleted", (event) => {
      const { ids } = JSON.parse(event.data);
      if (ids) this.view.removed(ids);
      else this.view.reload();
    });
    window.addEventListener("pagehide", () => events.close());
  }

  // -- the controls -----------------------------------------------------------------------

  wire() {
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
  source.view.showPages(source).catch((error) => source.view.toast(`cannot read the jobs: ${error.message}`));
  source.follow();
}

main().catch((error) => {
  const banner = $("#fatal");
  banner.textContent = `The console could not start: ${error.message || error}`;
  banner.hidden = false;
  console.error(banner.textContent);
});
