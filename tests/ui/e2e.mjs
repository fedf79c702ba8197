// End-to-end test of the UI in headless Chromium, driven by Playwright. Started by
// tests/integration/ui.rs against a real server, with:
//   SYMPHAINY_BASE  the server's base URL
//   ACME_TOKEN, GLOBEX_TOKEN  tenant tokens of two tenants; ADMIN_TOKEN the admin token
//   CHROMIUM  the browser binary; SCREENSHOTS  where each screen's picture goes
// Exits 0 when every check passed; otherwise prints the failed check and exits 1.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const base = process.env.SYMPHAINY_BASE;
const tokens = { acme: process.env.ACME_TOKEN, globex: process.env.GLOBEX_TOKEN, admin: process.env.ADMIN_TOKEN };
const shots = process.env.SCREENSHOTS;
mkdirSync(shots, { recursive: true });
/** How long one check waits for the page (the server may run on a loaded machine). */
const WAIT_MS = 30000;

function check(ok, what) {
  if (!ok) throw new Error("check failed: " + what);
  console.log("ok - " + what);
}

async function api(token, path, init = {}) {
  const r = await fetch(base + path, { ...init, headers: { authorization: "Bearer " + token, "content-type": "application/json", ...(init.headers || {}) } });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

let n = 0;
async function shot(page, name) {
  n += 1;
  const path = join(shots, `${String(n).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path, fullPage: true });
  console.log("screenshot " + path);
}

async function signIn(page, token) {
  await page.goto(base + "/ui");
  await page.getByLabel("Token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
}

/** The LSNs the page's live log holds, and the session's LSNs according to the WAL API. */
async function lsnsMatchWal(page, sessionId) {
  const shown = await page.$$eval("#event-log li", (lis) => lis.map((li) => Number(li.dataset.lsn)));
  const wal = [];
  let from = 1;
  for (;;) {
    const p = await api(tokens.acme, `/runtime/wal/${sessionId}?from_lsn=${from}&limit=1000`);
    wal.push(...p.body.events.map((e) => e.lsn));
    if (p.body.events.length < 1000) break;
    from = p.body.next_lsn;
  }
  return { shown, wal, equal: JSON.stringify(shown) === JSON.stringify(wal) };
}

async function waitRows(page, count, status) {
  await page.waitForFunction(([count, status]) =>
    document.querySelectorAll(`#executions tr[data-status=${status}]`).length >= count, [count, status], { timeout: WAIT_MS });
}

const files = [
  { name: "saffron-report.md", mimeType: "text/markdown", buffer: Buffer.from("# Saffron Quarterly Report\n\nOwner: Ada Lovelace\nReview date: 2026-05-04\n\n## Findings\nThe indigo turbine exceeded 4,200 rotations per minute.\n") },
  { name: "harbour.csv", mimeType: "text/csv", buffer: Buffer.from("vessel,port,tonnage\nAurora,Lisbon,1200\nBorealis,Osaka,900\n") },
  { name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("Field notes\nThe marmalade ferret sleeps near the copper kettle every afternoon.\n") },
];

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
let failedCheck = null;
try {
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));

  // Sign in (a bad token first: a clear refusal).
  await page.goto(base + "/ui");
  await shot(page, "signin");
  await page.getByLabel("Token").fill("not-a-token");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("This token is not valid").waitFor({ timeout: WAIT_MS });
  check(true, "a bad token is refused with a reason");
  await signIn(page, tokens.acme);
  await page.getByRole("heading", { name: "Sessions" }).waitFor({ timeout: WAIT_MS });
  await page.getByText("content.parse_and_embed").first().waitFor({ timeout: WAIT_MS });
  check(await page.getByText("No sessions yet").isVisible(), "an empty session list says so");
  await shot(page, "sessions-empty");

  // The server unreachable (as while it restarts): a clear banner, gone once it answers again.
  await page.route("**/sessions?*", (r) => r.abort("connectionrefused"));
  await page.evaluate(() => { location.hash = "#/sessions"; window.dispatchEvent(new HashChangeEvent("hashchange")); });
  await page.getByText("Server unreachable or restarting").waitFor({ timeout: WAIT_MS });
  await shot(page, "server-unreachable");
  await page.unroute("**/sessions?*");
  await page.evaluate(() => window.dispatchEvent(new HashChangeEvent("hashchange")));
  await page.getByText("No sessions yet").waitFor({ timeout: WAIT_MS });
  check(await page.locator("#banner").isHidden(), "an unreachable server is said so, and the notice goes when it answers");

  // Create a session.
  await page.getByRole("button", { name: "New session" }).click();
  await page.getByRole("heading", { name: "Session" }).waitFor({ timeout: WAIT_MS });
  await page.getByText(/live from LSN/).waitFor({ timeout: WAIT_MS });
  const sessionId = decodeURIComponent(new URL(page.url()).hash.split("/")[2]);
  check(sessionId.length === 26, "the new session's page is open: " + sessionId);

  // Upload three files at once; all three reach `completed` live.
  await page.setInputFiles("#files", files);
  await waitRows(page, 3, "completed");
  const rows = await page.$$eval("#executions tr", (trs) => trs.map((tr) => tr.textContent));
  check(files.every((f) => rows.some((r) => r.includes(f.name))), "three uploads, one row each, all completed");
  check(rows.every((r) => r.includes("extract_facts")), "each row shows its steps");
  check(rows.every((r) => !/· 0 ms/.test(r)), "a step under a millisecond reads <1 ms, not 0 ms");
  await shot(page, "uploads-completed");
  let m = await lsnsMatchWal(page, sessionId);
  check(m.equal, `live events equal the session's WAL (${m.shown.length} events, no gap, no duplicate)`);

  // Files dropped onto the drop zone (a real drop event with a DataTransfer) upload too.
  const dropped = await page.evaluateHandle(() => {
    const dt = new DataTransfer();
    dt.items.add(new File(["# Dropped A\n\nA teal heron waits.\n"], "dropped-a.md", { type: "text/markdown" }));
    dt.items.add(new File(["Dropped B: an amber fox.\n"], "dropped-b.txt", { type: "text/plain" }));
    return dt;
  });
  await page.dispatchEvent("#drop", "dragover", { dataTransfer: dropped });
  await page.dispatchEvent("#drop", "drop", { dataTransfer: dropped });
  await waitRows(page, 5, "completed");
  const droppedRows = await page.$$eval("#executions tr", (trs) => trs.map((tr) => tr.textContent));
  check(["dropped-a.md", "dropped-b.txt"].every((f) => droppedRows.some((r) => r.includes(f))),
    "two files dropped at once become two executions that complete");

  // An oversized file is rejected with the reason; the others are unaffected.
  await page.setInputFiles("#files", [{ name: "huge.txt", mimeType: "text/plain", buffer: Buffer.alloc(300 * 1024, 97) }]);
  await page.locator("#uploads li.err").getByText(/huge\.txt: rejected: .*too large/).waitFor({ timeout: WAIT_MS });
  check(true, "an oversized upload is rejected with its reason");
  await shot(page, "upload-rejected");

  // A dropped connection resumes from the last LSN seen: submit while reconnecting.
  await page.evaluate(() => window.symphainy.feed.drop());
  check((await page.getByLabel("steps").getAttribute("placeholder")) === "1 to 16 (default 1)",
    "a built-in capability's input says what it takes");
  await page.getByLabel("value").fill('"after the drop"');
  await page.getByLabel("steps").fill("3");
  await page.getByRole("button", { name: "Submit" }).click();
  await waitRows(page, 6, "completed");
  m = await lsnsMatchWal(page, sessionId);
  check(m.equal, `after a dropped connection: still no gap and no duplicate (${m.shown.length} events)`);
  check(await page.evaluate(() => window.symphainy.feed.drops) >= 1, "the feed did reconnect");

  // A reload resumes from the last LSN seen.
  await page.reload();
  await page.getByText(/live from LSN/).waitFor({ timeout: WAIT_MS });
  const resumedFrom = Number((await page.locator("#live").textContent()).match(/LSN (\d+)/)[1]);
  check(resumedFrom === m.wal[m.wal.length - 1] + 1, `the reloaded page resumed from LSN ${resumedFrom}, after the last one seen`);
  await waitRows(page, 6, "completed");
  await page.getByLabel("value").fill("42");
  await page.getByRole("button", { name: "Submit" }).click();
  await waitRows(page, 7, "completed");
  m = await lsnsMatchWal(page, sessionId);
  check(m.equal, `after a reload: no gap and no duplicate (${m.shown.length} events)`);

  // One execution's timeline and the WAL events behind it.
  await page.locator("#executions tr", { hasText: "saffron-report.md" }).getByRole("link").first().click();
  await page.getByRole("heading", { name: "Saga timeline" }).waitFor({ timeout: WAIT_MS });
  const steps = await page.$$eval("tr[data-step]", (trs) => trs.map((tr) => tr.dataset.step + ":" + tr.querySelector(".badge").textContent));
  check(JSON.stringify(steps) === JSON.stringify(["store", "parse", "chunk", "embed", "extract_facts"].map((s) => s + ":completed")),
    "the timeline shows every step completed: " + steps.join(", "));
  // intent_received, saga_started, 5 x (step_started, step_completed), saga_completed.
  const walTypes = await page.$$eval("tr[data-lsn] code", (cs) => cs.map((c) => c.textContent));
  check(walTypes.length === 13 && walTypes[0] === "intent_received" && walTypes[12] === "saga_completed",
    "the execution's 13 WAL events are listed, from its intent to its end: " + walTypes.join(", "));
  await shot(page, "execution-timeline");

  // An execution opened while it runs: the page follows it to the end.
  const running = await api(tokens.acme, "/intent/submit", { method: "POST",
    body: JSON.stringify({ intent_type: "runtime.echo", session_id: sessionId, payload: { value: "watched", steps: 16 } }) });
  await page.goto(`${base}/ui#/execution/${running.body.execution_id}`);
  await page.locator("tr[data-step]").nth(15).locator(".badge", { hasText: "completed" }).waitFor({ timeout: WAIT_MS });
  await page.getByRole("heading", { name: "Result" }).waitFor({ timeout: WAIT_MS });
  check(true, "an execution's page follows it live until it completes");

  // A saga that ends between the page's status read and its log read (here the status answer
  // is made stale by hand): no later event of it will reach the live feed, so the page must
  // read the status again instead of waiting for one.
  const raced = await api(tokens.acme, "/intent/submit?wait_ms=10000", { method: "POST",
    body: JSON.stringify({ intent_type: "runtime.echo", session_id: sessionId, payload: { value: "raced", steps: 2 } }) });
  const racedId = raced.body.execution_id;
  await page.route((url) => url.pathname === `/execution/${racedId}/status`, async (route) => {
    const response = await route.fetch();
    const stale = await response.json();
    Object.assign(stale, { status: "running", finished_at: null, result: null });
    stale.steps = stale.steps.map((st) => ({ ...st, status: "pending" }));
    await route.fulfill({ response, json: stale });
  }, { times: 1 });
  await page.goto(`${base}/ui#/execution/${racedId}`);
  await page.getByRole("heading", { name: "Result" }).waitFor({ timeout: WAIT_MS });
  check(true, "a saga that ended between the page's two reads is shown ended");
  await page.goBack();
  await page.goBack();
  await page.getByRole("heading", { name: "Saga timeline" }).waitFor({ timeout: WAIT_MS });

  // Its document: facts with spans, chunks.
  await page.getByRole("link", { name: "Open the document" }).click();
  await page.getByRole("heading", { name: "Facts" }).waitFor({ timeout: WAIT_MS });
  check(await page.getByText("Owner: Ada Lovelace").first().isVisible(), "the document shows its facts");
  check(await page.locator("mark").count() > 0, "facts are shown inside their chunk's text");
  await shot(page, "document");

  // Search a phrase from a file.
  await page.getByRole("link", { name: "Search" }).click();
  await page.getByLabel("Words or a phrase").fill("marmalade ferret copper kettle");
  await page.getByRole("button", { name: "Search" }).click();
  await page.locator("tr[data-document]").first().waitFor({ timeout: WAIT_MS });
  const top = await page.locator("tr[data-document]").first().textContent();
  check(top.includes("marmalade ferret"), "search finds the file with the phrase first");
  await shot(page, "search");

  // WAL browser, graph explorer, metrics.
  await page.goto(`${base}/ui#/wal/${sessionId}`);
  await page.locator("tr[data-lsn]").first().waitFor({ timeout: WAIT_MS });
  check(await page.locator("tr[data-lsn]").count() === 50, "the WAL browser shows a page of 50 events");
  await page.getByRole("button", { name: "Next page →" }).click();
  await page.getByText(/from LSN \d+: \d+ events/).waitFor({ timeout: WAIT_MS });
  await shot(page, "wal-browser");
  await page.goto(`${base}/ui#/graph/sessions/${sessionId}`);
  await page.getByRole("heading", { name: /Neighbours/ }).waitFor({ timeout: WAIT_MS });
  const neighbour = page.locator("td a", { hasText: "intents/" }).first();
  await neighbour.click();
  await page.getByRole("heading", { name: /^intents\// }).waitFor({ timeout: WAIT_MS });
  check(true, "the graph explorer walks from a session to its intent");
  await shot(page, "graph");
  await page.getByRole("link", { name: "Metrics" }).click();
  await page.locator("[data-metric=events] .big").waitFor({ timeout: WAIT_MS });
  await page.waitForTimeout(2500);
  check(Number((await page.locator("[data-metric=events] .big").textContent()).replace(/\D/g, "")) > 0, "the metrics dashboard shows events");
  check(await page.locator("svg.chart").count() >= 3, "the dashboard draws charts");
  await shot(page, "metrics");
  check(errors.length === 0, "no script error on any page: " + errors.join("; "));

  // The admin sees tenants and issues / revokes tokens.
  const adminPage = await (await browser.newContext({ viewport: { width: 1366, height: 900 } })).newPage();
  await signIn(adminPage, tokens.admin);
  await adminPage.getByRole("heading", { name: "Tenants and tokens" }).waitFor({ timeout: WAIT_MS });
  await adminPage.getByRole("cell", { name: "globex" }).waitFor({ timeout: WAIT_MS });
  await adminPage.getByLabel("Tenant", { exact: true }).fill("globex");
  await adminPage.getByLabel("User").fill("bob");
  await adminPage.getByRole("button", { name: "Issue token" }).click();
  await adminPage.getByRole("cell", { name: "bob" }).waitFor({ timeout: WAIT_MS });
  check(true, "the admin lists tenants and issues a token");
  await shot(adminPage, "admin");

  // Keyboard only: sign in, open a session, submit an intent, reach the timeline.
  const keys = await (await browser.newContext({ viewport: { width: 1366, height: 900 } })).newPage();
  await keys.goto(base + "/ui");
  await keys.getByLabel("Token").waitFor({ timeout: WAIT_MS });
  check(await keys.evaluate(() => document.activeElement.id) === "token", "the token field has the focus");
  await keys.keyboard.type(tokens.acme);
  await keys.keyboard.press("Enter");
  await keys.getByRole("heading", { name: "Sessions" }).waitFor({ timeout: WAIT_MS });
  const focusOn = async (name) => {
    for (let i = 0; i < 40; i++) {
      await keys.keyboard.press("Tab");
      const label = await keys.evaluate(() => (document.activeElement.textContent || "").trim());
      if (label === name) return true;
    }
    return false;
  };
  check(await focusOn("New session"), "Tab reaches the New session button");
  await keys.keyboard.press("Enter");
  await keys.getByText(/live from LSN/).waitFor({ timeout: WAIT_MS });
  await keys.getByLabel("value").focus();
  await keys.keyboard.type('"typed"');
  await keys.keyboard.press("Enter");
  await waitRows(keys, 1, "completed");
  check(await focusOn(await keys.locator("#executions a").first().textContent()), "Tab reaches the execution's link");
  await keys.keyboard.press("Enter");
  await keys.getByRole("heading", { name: "Saga timeline" }).waitFor({ timeout: WAIT_MS });
  check(true, "the keyboard alone signs in, opens a session, submits and opens the timeline");

  // Another tenant's UI never shows acme's sessions, executions or documents.
  const other = await (await browser.newContext({ viewport: { width: 1366, height: 900 } })).newPage();
  await signIn(other, tokens.globex);
  await other.getByRole("heading", { name: "Sessions" }).waitFor({ timeout: WAIT_MS });
  await other.getByText("No sessions yet").waitFor({ timeout: WAIT_MS });
  check(!(await other.content()).includes(sessionId), "globex's session list does not show acme's session");
  const execId = (await api(tokens.acme, `/runtime/wal/${sessionId}?from_lsn=1&limit=5`)).body.events.find((e) => e.execution_id).execution_id;
  await other.goto(`${base}/ui#/execution/${execId}`);
  await other.locator("[role=alert]").getByText(/not found/i).waitFor({ timeout: WAIT_MS });
  check(true, "globex opening acme's execution gets not found");
  const docId = (await api(tokens.acme, "/content/search?q=marmalade%20ferret&k=1")).body.results[0].document_id;
  await other.goto(`${base}/ui#/document/${docId}`);
  await other.locator("[role=alert]").getByText(/not found/i).waitFor({ timeout: WAIT_MS });
  await other.goto(`${base}/ui#/wal/${sessionId}`);
  await other.locator("[role=alert]").getByText(/not found/i).waitFor({ timeout: WAIT_MS });
  await other.goto(`${base}/ui#/session/${sessionId}`);
  await other.locator("[role=alert]").getByText(/not found/i).waitFor({ timeout: WAIT_MS });
  await other.goto(`${base}/ui#/search?q=marmalade%20ferret%20copper%20kettle`);
  await other.getByText("Nothing found").waitFor({ timeout: WAIT_MS });
  check(await other.locator("tr[data-document]").count() === 0, "globex's search finds nothing of acme's");
  await other.goto(`${base}/ui#/graph/sessions/${sessionId}`);
  await other.locator("[role=alert]").getByText(/not found/i).waitFor({ timeout: WAIT_MS });
  check(true, "globex sees none of acme's execution, document, WAL, session or graph vertex");
  await shot(other, "other-tenant");

  // A revoked token: the page says so and asks to sign in again.
  const me = await api(tokens.globex, "/auth/whoami");
  const revoked = await api(tokens.admin, `/admin/tokens/${me.body.token_id}/revoke`, { method: "POST" });
  check(revoked.status === 204, "the admin revokes globex's token");
  await other.goto(`${base}/ui#/sessions`);
  await other.getByText("Your token expired or was revoked").waitFor({ timeout: WAIT_MS });
  check(await other.getByLabel("Token").isVisible(), "a revoked token leads back to sign-in with the reason");
  await shot(other, "token-revoked");
} catch (e) {
  failedCheck = e;
} finally {
  await browser.close();
}
if (failedCheck) {
  console.error(String(failedCheck.stack || failedCheck));
  process.exit(1);
}
console.log("all UI checks passed");
