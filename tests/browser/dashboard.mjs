// Drives the operator dashboard in Debian's headless Chromium with
// playwright-core: signs in with an operator token, waits for the map to
// show the datacenters and the transfers in flight, drains one datacenter
// from its panel, and saves a screenshot. With a snapshot held there, it
// then opens the snapshot, compares its last two versions, picks a
// configuration key and the changed disk regions, asks for a new version,
// screenshots the confirmation and confirms. Prints one JSON line of what
// it saw; exits non-zero when something is missing.
//
// With EVAC.png it plans and runs the datacenter's evacuation; with a
// FAILED datacenter (declared down) it rehearses a failover of the first
// one and cleans it up, then opens the failed one's failover, activates it
// and fails back.
//
//   node dashboard.mjs URL TOKEN DATACENTER_ID SCREENSHOT.png [SNAPSHOT_ID DIFF.png KEY
//                      [EVAC.png [FAILED_ID FAILOVER.png]]]
import { chromium } from 'playwright-core';

const [url, token, dcId, screenshot, snapshotId, diffShot, key, evacShot, failedDc, foShot] =
  process.argv.slice(2);
if (!screenshot) {
  console.error('usage: node dashboard.mjs URL TOKEN DATACENTER_ID SCREENSHOT.png');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const seen = { requests: [], foreign: [], consoleErrors: [] };
let failed = null;
try {
  const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
  page.on('request', (r) => {
    seen.requests.push(r.url());
    if (!r.url().startsWith(url) && !r.url().startsWith('data:')) seen.foreign.push(r.url());
  });
  page.on('console', (m) => { if (m.type() === 'error') seen.consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => seen.consoleErrors.push(String(e)));

  await page.goto(`${url}/`);
  await page.fill('#token-input', token);
  await page.click('#token-save');
  await page.waitForSelector('body[data-loaded="true"]', { timeout: 20000 });
  await page.waitForSelector('path.transfer-arc', { timeout: 20000 });

  seen.countries = await page.locator('#countries path.country').count();
  seen.datacenters = await page.locator('circle.dc').count();
  seen.arcs = await page.locator('path.transfer-arc').count();
  seen.halos = await page.locator('circle.halo').count();
  seen.queue = await page.textContent('#stat-queue');
  seen.whoami = await page.textContent('#whoami');

  // Open the datacenter's panel from the map, then drain it.
  await page.click(`circle.dc[data-id="${dcId}"]`);
  await page.waitForSelector(`#dc-panel[data-id="${dcId}"]`, { state: 'visible' });
  await page.waitForFunction(() => document.querySelectorAll('#dc-snapshots tbody tr').length > 0,
    null, { timeout: 10000 });
  seen.panelSnapshots = await page.locator('#dc-snapshots tbody tr').count();
  seen.panelTransfers = await page.locator('#dc-transfers tbody tr').count();
  seen.panelProgress = await page.locator('#dc-transfers tbody td:nth-child(5)').allTextContents();
  seen.panelLagging = await page.locator('#dc-snapshots tbody td.error').allTextContents();
  await page.click('#drain');
  await page.waitForFunction(() => document.getElementById('dc-status').textContent === 'draining',
    null, { timeout: 10000 });
  await page.waitForSelector(`circle.dc.draining[data-id="${dcId}"]`, { timeout: 10000 });
  seen.statusAfterDrain = await page.textContent('#dc-status');
  seen.message = await page.textContent('#dc-message');
  await page.locator('#tooltip').evaluate((n) => { n.hidden = true; });
  await page.screenshot({ path: screenshot });
  seen.screenshot = screenshot;

  if (evacShot) {
    // Plan the drained datacenter's evacuation (a dry run), then run it.
    await page.click('#evac-plan');
    await page.waitForFunction(() => document.getElementById('evac-summary').textContent.includes('planned'),
      null, { timeout: 15000 });
    seen.evacPlan = await page.textContent('#evac-summary');
    seen.evacLevels = await page.locator('#evac-levels tbody td:nth-child(1)').allTextContents();
    await page.click('#evac-run');
    await page.waitForFunction(() => document.getElementById('evac-summary').textContent.includes('running'),
      null, { timeout: 15000 });
    seen.evacRunning = await page.textContent('#evac-summary');
    seen.evacStates = await page.locator('#evac-levels tbody td:nth-child(2)').allTextContents();
    await page.locator('#tooltip').evaluate((n) => { n.hidden = true; });
    await page.screenshot({ path: evacShot });
    seen.evacScreenshot = evacShot;
  }

  if (snapshotId) {
    // The snapshot's versions: the diff view, then a composition.
    await page.locator('#dc-snapshots tbody tr', { hasText: snapshotId }).first().click();
    await page.waitForSelector(`#snap-panel[data-id="${snapshotId}"]`, { state: 'visible' });
    await page.waitForSelector('#diff-config tbody input[type="checkbox"]', { timeout: 10000 });
    await page.waitForSelector('#diff-disk-bar rect.extent', { timeout: 10000 });
    seen.diffPaths = await page.locator('#diff-config tbody td:nth-child(2)').allTextContents();
    seen.diffOld = await page.locator('#diff-config tbody td:nth-child(3)').allTextContents();
    seen.diffNew = await page.locator('#diff-config tbody td:nth-child(4)').allTextContents();
    seen.extents = await page.locator('#diff-disk-bar rect.extent').count();
    seen.diskText = await page.textContent('#diff-disk-text');
    // The guest files: the agent's job asked for, its list, a file's unified diff.
    await page.click('#files-run');
    await page.waitForSelector('#diff-files tbody tr', { timeout: 10000 });
    seen.files = await page.locator('#diff-files tbody tr').evaluateAll(
      (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
    seen.filesText = await page.textContent('#files-text');
    await page.locator('#diff-files tbody tr', { hasText: '/etc/hostname' }).click();
    await page.waitForSelector('#file-diff', { state: 'visible' });
    seen.fileDiff = await page.textContent('#file-diff');
    await page.check(`#diff-config input[data-path="${key}"]`);
    await page.check('#take-extents');
    await page.check('#diff-files input[data-item="/etc/new.conf"]');
    await page.click('#compose');
    await page.waitForSelector('#compose-confirm', { state: 'visible' });
    seen.summary = await page.textContent('#compose-summary');
    await page.screenshot({ path: diffShot });
    seen.diffScreenshot = diffShot;
    await page.click('#compose-yes');
    await page.waitForFunction(() => document.getElementById('snap-message').textContent.includes('queued'),
      null, { timeout: 10000 });
    seen.composeMessage = await page.textContent('#snap-message');
  }

  if (failedDc) {
    const waitText = (id, text) => page.waitForFunction(
      ([i, t]) => document.getElementById(i).textContent.includes(t), [id, text], { timeout: 15000 });
    const cells = (sel) => page.locator(sel).evaluateAll(
      (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
    // A rehearsal of this datacenter's failover, then its cleanup.
    await page.click('#fotest-start');
    await waitText('fotest-summary', 'running');
    seen.foTestRunning = await page.textContent('#fotest-summary');
    await page.click('#fotest-cleanup');
    await waitText('fotest-summary', 'cleaned');
    seen.foTestCleaned = await page.textContent('#fotest-summary');
    // The failed datacenter: its failovers, each snapshot's outcome. (Its
    // neighbours on the map cover part of its dot: chosen by keyboard.)
    await page.focus(`circle.dc[data-id="${failedDc}"]`);
    await page.keyboard.press('Enter');
    await page.waitForSelector(`#dc-panel[data-id="${failedDc}"]`, { state: 'visible' });
    await page.waitForFunction(() => document.querySelectorAll('#fo-snapshots tbody tr').length > 0,
      null, { timeout: 15000 });
    seen.foList = await cells('#fo-list tbody tr');
    seen.foSummary = await page.textContent('#fo-summary');
    seen.foSnapshots = await cells('#fo-snapshots tbody tr');
    seen.foFailbackWhileDown = await page.isVisible('#fo-failback');
    seen.foTestWhileDown = await page.isDisabled('#fotest-start');
    await page.locator('#tooltip').evaluate((n) => { n.hidden = true; });
    await page.screenshot({ path: foShot });
    seen.foScreenshot = foShot;
    // Back: activate it, then fail back from the panel.
    await page.click('#activate');
    await page.waitForSelector('#fo-failback', { state: 'visible', timeout: 15000 });
    await waitText('fo-summary', 'recovered');
    seen.foBack = await page.textContent('#fo-summary');
    await page.click('#fo-failback');
    await waitText('fo-summary', 'failback:');
    seen.foFailback = await page.textContent('#fo-summary');
    seen.foFailbackAfter = await page.isVisible('#fo-failback');
  }
} catch (e) {
  failed = String(e);
} finally {
  await browser.close();
}
seen.requests = seen.requests.length;
console.log(JSON.stringify({ ...seen, failed }));
process.exit(failed ? 1 : 0);
