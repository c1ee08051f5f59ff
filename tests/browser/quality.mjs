// Drives the dashboard's "Placement quality" page in Debian's headless
// Chromium with playwright-core: signs in with an operator token, opens the
// page from the header, clicks each stored report named on the command line
// and reads what the page drew (the policies' table, the trade-off chart's
// points and Pareto front, the CDF's and the per-day chart's lines or their
// "not in this report"), then screenshots the first. Prints one JSON line of
// what it saw; exits non-zero when something is missing.
//
//   node quality.mjs URL TOKEN SCREENSHOT.png REPORT_ID...
import { chromium } from 'playwright-core';

const [url, token, screenshot, ...ids] = process.argv.slice(2);
if (!ids.length) {
  console.error('usage: node quality.mjs URL TOKEN SCREENSHOT.png REPORT_ID...');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const seen = { foreign: [], consoleErrors: [], reports: {}, failed: null };
let failed = null;
try {
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  page.on('request', (r) => {
    if (!r.url().startsWith(url) && !r.url().startsWith('data:')) seen.foreign.push(r.url());
  });
  page.on('console', (m) => { if (m.type() === 'error') seen.consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => seen.consoleErrors.push(String(e)));

  await page.goto(`${url}/`);
  await page.fill('#token-input', token);
  await page.click('#token-save');
  await page.waitForSelector('body[data-loaded="true"]', { timeout: 20000 });
  await page.click('#nav-quality');
  await page.waitForSelector('#quality-reports tbody tr', { timeout: 15000 });
  seen.mapHidden = await page.isHidden('#map');
  seen.list = await page.locator('#quality-reports tbody tr').evaluateAll(
    (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));

  const texts = (sel) => page.locator(sel).allTextContents();
  for (const [k, id] of ids.entries()) {
    await page.click(`#quality-reports tbody tr[data-id="${id}"]`);
    await page.waitForSelector(`#quality-report[data-id="${id}"]`, { state: 'visible', timeout: 15000 });
    await page.waitForSelector('#quality-tradeoff circle.point', { timeout: 10000 });
    const r = {};
    r.title = await page.textContent('#quality-title');
    r.rows = await page.locator('#quality-table tbody tr').evaluateAll(
      (rows) => rows.map((row) => [...row.cells].map((c) => c.textContent)));
    r.points = await page.locator('#quality-tradeoff circle.point').evaluateAll(
      (dots) => dots.map((d) => [d.dataset.policy, Number(d.getAttribute('cx')), Number(d.getAttribute('cy'))]));
    r.pareto = await page.locator('#quality-tradeoff circle.point.pareto').evaluateAll(
      (dots) => dots.map((d) => d.dataset.policy));
    r.front = await page.locator('#quality-tradeoff polyline.front').count();
    r.cdfLines = await page.locator('#quality-cdf polyline.series').evaluateAll(
      (ls) => ls.map((l) => [l.dataset.policy, l.getAttribute('points').split(' ').length]));
    r.cdfAbsent = await texts('#quality-cdf text.absent');
    r.cdfLegend = await texts('#quality-cdf text.legend');
    r.labels = await texts('#quality-tradeoff text.point-label');
    r.dayLines = await page.locator('#quality-days polyline.series').evaluateAll(
      (ls) => ls.map((l) => [l.dataset.policy, l.getAttribute('points').split(' ').length]));
    r.daysAbsent = await texts('#quality-days text.absent');
    seen.reports[id] = r;
    if (k === 0) {
      await page.screenshot({ path: screenshot, fullPage: true });
      seen.screenshot = screenshot;
    }
  }
  // Back to the map: it is drawn again.
  await page.click('#nav-map');
  await page.waitForSelector('#map circle.dc', { state: 'visible', timeout: 10000 });
  seen.qualityHiddenAfter = await page.isHidden('#quality');
} catch (e) {
  failed = e;
  seen.failed = String(e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
if (failed) {
  console.error(failed);
  process.exit(1);
}
