// dashboard_test — the dashboard (gateway/assets/dashboard.html) in headless
// Chromium, driven by puppeteer-core: it loads with no external request and
// no script error, it updates as jobs run, its buttons (cancel, retry,
// status filters, paging, a job's detail) do what they say. run.py starts
// the stack and sets GATEWAY, OPERATOR_KEY, TENANT_KEY and CHROMIUM; with
// SCREENSHOT it only takes the picture for docs/ (under run.py's load).
// Prints one line per test and 'N passed, N failed'.
import puppeteer from "puppeteer-core";

const gateway = process.env.GATEWAY;
const operatorKey = process.env.OPERATOR_KEY;
const tenantKey = process.env.TENANT_KEY;
const STEP_TIMEOUT_MS = 20000;

async function api(method, path, body, key = operatorKey) {
  const headers = { Authorization: "Bearer " + key };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(gateway + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}
async function submit(path, extra = {}, key = operatorKey) {
  const answer = await api("POST", "/v1/jobs", { kind: "http", provider: "mock", request: { path }, ...extra }, key);
  if (answer.status !== 202) throw new Error("submit: " + answer.status + " " + JSON.stringify(answer.body));
  return answer.body.id;
}
async function jobStatus(id) {
  return (await api("GET", "/v1/jobs/" + id)).body.status;
}
async function until(what, predicate, timeoutMs = STEP_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error("timed out waiting for " + what);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
function check(condition, message) {
  if (!condition) throw new Error(message);
}

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM,
  headless: true,
  // Root in a container: no sandbox; no GPU; /dev/shm may be small.
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
});
const page = await browser.newPage();
await page.setViewport({ width: 1400, height: 1800 });
const origin = new URL(gateway).origin;
const foreign = [];
const problems = [];
page.on("request", (req) => { if (!req.url().startsWith(origin + "/")) foreign.push(req.url()); });
page.on("pageerror", (err) => problems.push("page error: " + err.message));
// An answer the page expects and shows (401 before a key, 403 for a tenant
// asking operator figures) is logged by Chromium as a failed load: not a
// script error.
page.on("console", (msg) => {
  if (msg.type() === "error" && !msg.text().startsWith("Failed to load resource"))
    problems.push("console: " + msg.text());
});
page.on("response", (res) => { if (res.status() >= 500) problems.push(res.status() + " from " + res.url()); });
// The key is typed into the page as an operator would (kept in localStorage).
async function useKey(key) {
  await page.$eval("#key", (input, value) => {
    input.value = value;
    input.dispatchEvent(new Event("change"));
  }, key);
}
// The tables are redrawn at each refresh (every 2 s): a click that meets a
// row just replaced is tried again.
async function clickOn(selector) {
  await until("a click on " + selector, () => page.click(selector).then(() => true, () => false));
}
async function rowStatus(id) {
  return page.$eval(`#jobs tbody tr[data-id="${id}"]`, (tr) => tr.dataset.status).catch(() => null);
}
async function refreshes() {
  return page.$eval("body", (b) => Number(b.dataset.refreshes || 0));
}

if (process.env.SCREENSHOT) {
  await page.goto(gateway + "/", { waitUntil: "load" });
  await useKey(operatorKey);
  await new Promise((resolve) => setTimeout(resolve, Number(process.env.SCREENSHOT_AFTER_S || 60) * 1000));
  // A job in the detail, as an operator looks at one.
  await page.click('#filters button[data-status="failed"]');
  // The table is redrawn at each refresh: click the newest failed job once
  // the failed ones are listed, until its detail opens.
  await until("a failed job's detail", async () => {
    const statuses = await page.$$eval("#jobs tbody tr", (rows) => rows.map((r) => r.dataset.status));
    if (!statuses.length || statuses.some((x) => x !== "failed")) return false;
    await page.click("#jobs tbody tr td:nth-child(2)").catch(() => {});
    return !(await page.$eval("#detail", (d) => d.hidden));
  }, 60000).catch(async (err) => {
    // What the page showed instead, for whoever reads the failure.
    console.log("page status: " + await page.$eval("#status", (n) => n.textContent)
                + "; " + await page.$eval("#page", (n) => n.textContent));
    await page.screenshot({ path: process.env.SCREENSHOT + ".failed.png", fullPage: true });
    throw err;
  });
  await until("the detail", () => page.$eval("#detail-events tbody tr", () => true).catch(() => false));
  await page.click('#filters button[data-status=""]');
  await new Promise((resolve) => setTimeout(resolve, 2500));
  await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
  console.log("screenshot written to " + process.env.SCREENSHOT);
  await browser.close();
  process.exit(problems.length || foreign.length ? 1 : 0);
}

const tests = [];
function test(name, fn) { tests.push([name, fn]); }

test("loads: no external request, no script error, every part filled", async () => {
  await page.goto(gateway + "/", { waitUntil: "load" });
  check(await page.$eval("title", (t) => t.textContent) === "jobgate", "title");
  await useKey(operatorKey);
  await until("the providers' row", () => page.$('#providers tbody tr[data-provider="mock"]'));
  await until("two workers", async () => (await page.$$("#workers tbody tr")).length === 2);
  const groups = await page.$$eval("#chart g[data-interval]", (g) => g.length);
  check(groups === 90, "the chart has " + groups + " intervals, not 90");
  const broker = await page.$eval('[data-card="broker"] b', (b) => b.textContent);
  check(broker === "up", "broker card says " + broker);
  const status = await page.$eval("#status", (s) => s.textContent);
  check(status.startsWith("updated"), "status line: " + status);
});

test("updates: jobs run appear finished, in the chart and the counts", async () => {
  const before = await refreshes();
  const ids = [];
  for (let i = 0; i < 5; i++) ids.push(await submit("/json?latency_ms=100"));
  const failing = await submit("/json?status=400");
  for (const id of ids)
    await until("job " + id + " shown succeeded", async () => (await rowStatus(id)) === "succeeded");
  await until("the failed job shown failed", async () => (await rowStatus(failing)) === "failed");
  check(await refreshes() > before, "the page did not refresh by itself");
  await until("succeeded bars in the chart", async () => (await page.$$("#chart rect.bar-succeeded")).length > 0);
  await until("failed bars in the chart", async () => (await page.$$("#chart rect.bar-failed")).length > 0);
  const succeeded = await page.$eval('[data-card="succeeded (15 min)"] b', (b) => Number(b.textContent));
  const failedCount = await page.$eval('[data-card="failed (15 min)"] b', (b) => Number(b.textContent));
  check(succeeded >= 5 && failedCount >= 1, `cards say ${succeeded} succeeded, ${failedCount} failed`);
  const outcome = await page.$eval(`#jobs tbody tr[data-id="${failing}"] td:nth-child(8)`, (td) => td.textContent);
  check(outcome === "upstream_status 400", "outcome of the failed job: " + outcome);
  // Ids read apart: the random tails of the rows differ.
  const tails = await page.$$eval("#jobs tbody tr .id .rand", (n) => n.map((x) => x.textContent));
  check(tails.length >= 6 && new Set(tails).size === tails.length, "ids not told apart: " + tails);
});

test("cancel button cancels a running job", async () => {
  const slow = await submit("/json?latency_ms=30000", { max_attempts: 1 });
  await until("the slow job shown running", async () => (await rowStatus(slow)) === "running");
  await clickOn(`#jobs tbody tr[data-id="${slow}"] button.cancel`);
  await until("the job canceled", async () => (await jobStatus(slow)) === "canceled");
  await until("the row shown canceled", async () => (await rowStatus(slow)) === "canceled");
  const cancelDisabled = await page.$eval(`#jobs tbody tr[data-id="${slow}"] button.cancel`, (b) => b.disabled);
  check(cancelDisabled, "cancel still enabled on a canceled job");
});

test("retry button runs a failed job again", async () => {
  const id = await submit("/flaky?fail=1&key=dash-retry", { max_attempts: 1 });
  await until("the job failed", async () => (await rowStatus(id)) === "failed");
  await clickOn(`#jobs tbody tr[data-id="${id}"] button.retry`);
  // The second call of the flaky path succeeds.
  await until("the retried job succeeded", async () => (await jobStatus(id)) === "succeeded");
  await until("the row shown succeeded", async () => (await rowStatus(id)) === "succeeded");
});

test("status filter and paging", async () => {
  const failedCount = async () => (await api("GET", "/v1/jobs?status=failed&limit=1000")).body.jobs.length;
  const before = await failedCount();
  for (let i = 0; i < 25; i++) await submit("/json?status=404");
  await until("25 more failures", async () => (await failedCount()) >= before + 25);
  await page.click('#filters button[data-status="failed"]');
  await until("a page of failed jobs", async () => {
    const statuses = await page.$$eval("#jobs tbody tr", (rows) => rows.map((r) => r.dataset.status));
    return statuses.length === 20 && statuses.every((s) => s === "failed");
  });
  const first = await page.$$eval("#jobs tbody tr", (rows) => rows.map((r) => r.dataset.id));
  check(await page.$eval("#prev", (b) => b.disabled), "newer enabled on page 1");
  await page.click("#next");
  await until("page 2", async () => (await page.$eval("#page", (p) => p.textContent)).startsWith("page 2"));
  const second = await until("page 2's rows", async () => {
    const ids = await page.$$eval("#jobs tbody tr", (rows) => rows.map((r) => r.dataset.id));
    return ids.length > 0 && !ids.some((id) => first.includes(id)) ? ids : null;
  });
  const statuses = await page.$$eval("#jobs tbody tr", (rows) => rows.map((r) => r.dataset.status));
  check(statuses.every((s) => s === "failed"), "page 2 holds " + statuses);
  const total = await failedCount();
  check(second.length === total - 20, "page 2 has " + second.length + " of " + total + " failed jobs");
  await page.click("#prev");
  await until("page 1 again", async () => {
    const ids = await page.$$eval("#jobs tbody tr", (rows) => rows.map((r) => r.dataset.id));
    return ids.length === 20 && ids[0] === first[0];
  });
  await page.click('#filters button[data-status="succeeded"]');
  await until("only succeeded jobs", async () => {
    const s = await page.$$eval("#jobs tbody tr", (rows) => rows.map((r) => r.dataset.status));
    return s.length > 0 && s.every((x) => x === "succeeded");
  });
  await page.click('#filters button[data-status=""]');
});

test("a job's detail: spec (secrets hidden), result, events", async () => {
  await page.click('#filters button[data-status=""]');
  const id = await submit("/json?latency_ms=300", { request: { path: "/json?latency_ms=300", headers: { Authorization: "Bearer s3cr3t-dashboard" } }, metadata: { order: 42 } });
  await until("the row", () => page.$(`#jobs tbody tr[data-id="${id}"]`));
  await clickOn(`#jobs tbody tr[data-id="${id}"] td:nth-child(2)`);
  await until("the detail shown", async () => !(await page.$eval("#detail", (d) => d.hidden)));
  const spec = await until("the spec", async () => {
    const text = await page.$eval("#detail-spec", (p) => p.textContent);
    return text.includes("latency_ms=300") ? text : null;
  });
  check(!spec.includes("s3cr3t-dashboard"), "the spec shows a secret header value");
  await until("the result event", () => page.$('#detail-events tbody tr[data-event="result"]'));
  const events = await page.$$eval("#detail-events tbody tr", (rows) => rows.map((r) => r.dataset.event));
  check(events.includes("status"), "no status event: " + events);
  await until("the result shown", async () => (await page.$eval("#detail-outcome", (p) => p.textContent)).includes('"status": 200'));
  const facts = await page.$eval("#detail-facts", (d) => d.textContent);
  check(facts.includes('{"order":42}'), "metadata not shown: " + facts);
  check(await page.$eval("#detail-cancel", (b) => b.disabled), "cancel enabled on a finished job");
  await page.click("#detail-close");
  check(await page.$eval("#detail", (d) => d.hidden), "the detail did not close");
});

test("a tenant key: its own jobs, no broker-wide figures", async () => {
  await page.click('#filters button[data-status=""]');
  const own = await submit("/json", {}, tenantKey);
  await useKey(tenantKey);
  await until("the operator-only note", async () => !(await page.$eval("#throughput-note", (n) => n.hidden)));
  const note = await page.$eval("#throughput-note", (n) => n.textContent);
  check(note.includes("operator key"), "note: " + note);
  await until("the tenant's job", () => page.$(`#jobs tbody tr[data-id="${own}"]`));
  const ids = await page.$$eval("#jobs tbody tr", (rows) => rows.map((r) => r.dataset.id));
  check(ids.length === 1, "a tenant sees " + ids.length + " jobs");
  await useKey(operatorKey);
  await until("the chart again", async () => !(await page.$eval("#throughput-body", (n) => n.hidden)));
});

let passed = 0, failed = 0;
for (const [name, fn] of tests) {
  const started = Date.now();
  try {
    await fn();
    check(foreign.length === 0, "requests left the gateway: " + foreign.join(", "));
    check(problems.length === 0, problems.join("; "));
    passed++;
    console.log(`ok   ${name} (${((Date.now() - started) / 1000).toFixed(1)}s)`);
  } catch (err) {
    failed++;
    console.log(`FAIL ${name}: ${err.message}`);
    problems.length = 0;
  }
}
await browser.close();
console.log(`dashboard: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
