// Opens the test page (page/player.html) in Debian's Chromium through playwright-core, waits until
// the page says it is done, and prints one JSON object: the page's report, every response and
// failed request the browser saw, and the console's warnings and errors.
//
// Every response and failure carries `t_ms` (this process's Date.now(): the page stamps its own events
// with Date.now() too) and `seq` (the order this process heard them in). A failure heard once the driver
// has read the page's report goes to `failed_after_done`, not `failed`: from then on the driver takes a
// screenshot and closes the browser, which cancels what the player still had in flight
// (`in_flight_at_stop`: the requests started and not yet finished at that moment).
//
// Usage: node run_player.mjs '{"url": "...", "chromium": "/usr/bin/chromium", "timeout_s": 120}'
import { chromium } from 'playwright-core';

const config = JSON.parse(process.argv[2]);
// The flags Chromium needs on a machine with no network but loopback and no GPU (see tests/browser).
const args = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required',
  '--disable-dev-shm-usage'];
const browser = await chromium.launch({ executablePath: config.chromium, headless: true, args,
  timeout: 60_000 });
const out = { report: null, screenshot: null, responses: [], failed: [], failed_after_done: [],
  in_flight_at_stop: [], stop_ms: null, console: [], browser: browser.version() };
let seq = 0;
let stopping = false;
const started = new Map();  // request -> Date.now() when the browser sent it, until it finished or failed
try {
  const page = await browser.newPage();
  page.on('request', (r) => started.set(r, Date.now()));
  page.on('requestfinished', (r) => started.delete(r));
  page.on('response', (r) => out.responses.push({ url: r.url(), method: r.request().method(), status: r.status(),
    t_ms: Date.now(), seq: seq++ }));
  page.on('requestfailed', (r) => {
    const failure = { url: r.url(), method: r.method(), error: r.failure()?.errorText, type: r.resourceType(),
      started_ms: started.get(r) ?? null, t_ms: Date.now(), seq: seq++ };
    started.delete(r);
    (stopping ? out.failed_after_done : out.failed).push(failure);
  });
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') out.console.push(`${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => out.console.push(`pageerror: ${e.message}`));
  await page.goto(config.url);
  await page.waitForFunction(() => window.abrkit && window.abrkit.done, null,
    { timeout: config.timeout_s * 1000, polling: 200 });
  out.report = await page.evaluate(() => window.abrkit);
  // What failed until now, the player did; what fails from here on, the driver's screenshot and close may.
  stopping = true;
  out.stop_ms = Date.now();
  out.in_flight_at_stop = [...started].map(([r, t]) => ({ url: r.url(), method: r.method(), type: r.resourceType(),
    started_ms: t }));
  // What the compositor shows (a canvas cannot read an EME-decrypted frame: Chromium draws it black).
  const shot = await page.locator('video').screenshot();
  out.screenshot = await page.evaluate(async (b64) => {
    const image = new Image();
    image.src = `data:image/png;base64,${b64}`;
    await image.decode();
    return window.abrkitLuma(image);
  }, shot.toString('base64'));
} catch (e) {
  out.error = String(e);
} finally {
  stopping = true;
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + '\n');
