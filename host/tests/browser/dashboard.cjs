// Drives `lattice ui` in headless Chromium for host/tests/all/ui.rs.
//
// Usage: node dashboard.cjs URL ACTOR HOST
// Env: LATTICE_PLAYWRIGHT_CORE (path of the playwright-core package),
//      LATTICE_CHROMIUM (browser binary, default /usr/bin/chromium),
//      LATTICE_SCREENSHOT (optional: where to save a screenshot at the end).
//
// Talks to the test over stdio, one line each way: prints "calls N" once the
// page shows the actor, waits for "called" on stdin (the test made a call),
// then checks that the counter moved, that a cancelled stop does nothing and
// that a confirmed scale to 3 replicas shows; prints "ok" at the end. Any
// failure prints the reason and exits 1.
"use strict";
const { chromium } = require(process.env.LATTICE_PLAYWRIGHT_CORE || "playwright-core");
const readline = require("node:readline");

const [url, actor, host] = process.argv.slice(2);
const lines = readline.createInterface({ input: process.stdin });
const nextLine = () => new Promise(resolve => lines.once("line", resolve));
const WAIT = { timeout: 20000 };

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.LATTICE_CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const problems = [];
    page.on("pageerror", e => problems.push(`page error: ${e.message}`));
    await page.goto(url);

    // A host and an actor started by the test appear.
    await page.locator(`#hosts tr[data-host="${host}"]`).waitFor(WAIT);
    const row = page.locator(`#actors tr[data-actor="${actor}"][data-host="${host}"]`);
    await row.waitFor(WAIT);
    const calls = Number(await row.locator("td.calls").textContent());
    console.log(`calls ${calls}`);

    // A call moves the counters.
    if ((await nextLine()) !== "called") throw new Error("the test did not say it called");
    await page.waitForFunction(
      ([sel, before]) => { const c = document.querySelector(sel); return c && Number(c.textContent) > before; },
      [`#actors tr[data-actor="${actor}"][data-host="${host}"] td.calls`, calls], WAIT);

    // The live event stream is connected.
    await page.locator("#live.on").waitFor(WAIT);

    // A stop that is cancelled does nothing.
    await row.locator("button.stop").click();
    await page.locator("#confirm[open]").waitFor(WAIT);
    await page.locator("#confirm-cancel").click();
    await page.locator("#confirm[open]").waitFor({ state: "detached", ...WAIT }).catch(() => {});
    if (await page.locator("#confirm[open]").count()) throw new Error("the dialog stayed open after Cancel");

    // A confirmed scale takes effect.
    await row.locator("input.replicas").fill("3");
    await row.locator("button.scale").click();
    const text = await page.locator("#confirm-text").textContent();
    if (!text.includes(`Scale actor ${actor}`)) throw new Error(`unexpected confirmation: ${text}`);
    await page.locator("#confirm-ok").click();
    await page.locator("#notice.show", { hasText: `to 3 replicas` }).waitFor(WAIT);
    await page.waitForFunction(
      sel => { const c = document.querySelector(sel); return c && c.textContent === "3"; },
      `#actors tr[data-actor="${actor}"][data-host="${host}"] td.replicas`, WAIT);
    await page.locator('#events div[data-kind="actor_scaled"]').first().waitFor(WAIT);

    if (process.env.LATTICE_SCREENSHOT) await page.screenshot({ path: process.env.LATTICE_SCREENSHOT, fullPage: true });
    if (problems.length) throw new Error(problems.join("; "));
    console.log("ok");
  } finally {
    await browser.close();
    lines.close();
  }
})().catch(e => {
  console.log(`failed: ${e.message.split("\n")[0]}`);
  process.exit(1);
});
