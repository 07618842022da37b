// Opens the test page (page/player.html) in Debian's Chromium through playwright-core, waits until
// the page says it is done, and prints one JSON object: the page's report, every response and
// failed request the browser saw, and the console's warnings and errors.
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
const out = { report: null, screenshot: null, responses: [], failed: [], console: [], browser: browser.version() };
try {
  const page = await browser.newPage();
  page.on('response', (r) => out.responses.push({ url: r.url(), method: r.request().method(), status: r.status() }));
  page.on('requestfailed', (r) => out.failed.push({ url: r.url(), method: r.method(), error: r.failure()?.errorText }));
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') out.console.push(`${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => out.console.push(`pageerror: ${e.message}`));
  await page.goto(config.url);
  await page.waitForFunction(() => window.abrkit && window.abrkit.done, null,
    { timeout: config.timeout_s * 1000, polling: 200 });
  out.report = await page.evaluate(() => window.abrkit);
  out.failed = [...out.failed];  // what failed while playing (closing the browser aborts the rest)
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
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + '\n');
