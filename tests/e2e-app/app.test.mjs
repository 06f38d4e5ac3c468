// Drives the real CP-IS Field window (tauri-driver + WebKitWebDriver under Xvfb) against a real central:
// enrol, sign in, an invalid number, a miss, a flagged child and its alert, offline from this
// device's copy, the queued notification delivered after reconnecting, checks over a weak link, and a
// search by name and date of birth. Started by scripts/e2e-app.sh.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { WebDriver } from './webdriver.mjs';
import { nhsCheckDigit, formatNhs } from '../../ui/src/logic.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const CPIS = process.env.CPIS_BIN || join(ROOT, 'target/debug/cpis');
const APP = process.env.CPIS_APP_BIN || join(ROOT, 'target/debug/cpis-field');
const PROXY = process.env.CPIS_PROXY_BIN || join(ROOT, 'target/debug/fault-proxy');
const WORK = process.env.E2E_WORK || join(ROOT, 'artifacts/e2e-app');
const SHOTS = join(ROOT, 'artifacts/screenshots');
const DRIVER = process.env.TAURI_DRIVER_URL || 'http://127.0.0.1:4444';
const DB = `sqlite:${join(WORK, 'central.sqlite')}`;
const PIN = '482913';
const LA = 'E2E01';
const REGION = 'north-east';

/** Valid test-range numbers from a prefix the demo register never uses (it stays below 999 003). */
function numbersFrom(prefix6, count) {
  const out = [];
  for (let i = 0; out.length < count; i += 1) {
    const nine = `${prefix6}${String(i).padStart(3, '0')}`;
    const c = nhsCheckDigit(nine);
    if (c !== null) out.push(nine + c);
  }
  return out;
}
const [FLAGGED_ONLINE, FLAGGED_OFFLINE] = numbersFrom('999950', 2);
const [MISS] = numbersFrom('999970', 1);

const today = new Date();
const isoDaysAgo = (d) => new Date(today.getTime() - d * 86400000).toISOString().slice(0, 10);

function cpis(...args) {
  return execFileSync(CPIS, ['central', '--db', DB, ...args], { encoding: 'utf8', env: { ...process.env, CPIS_PIN: PIN } });
}

function hasCommand(name) {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function freePort() {
  return new Promise((ok) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => ok(port)); });
  });
}

let central = null;
let centralUrl;
let port;
// The device reaches the central through a loopback proxy that can pace replies like a weak mobile
// signal or hold them like a tunnel (the last test uses it; until then it passes everything on).
let proxy = null;
let proxyUrl;
let doorPort;
const wd = new WebDriver(DRIVER);

async function startCentral() {
  central = spawn(CPIS, ['central', '--db', DB, 'serve', '--listen', `127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  central.stderr.on('data', (d) => process.stderr.write(`[central] ${d}`));
  const until = Date.now() + 20000;
  while (Date.now() < until) {
    try {
      const r = await fetch(`${centralUrl}/v1/status`);
      if (r.ok) return;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error('the central did not start');
}

async function stopCentral() {
  if (!central) return;
  const done = new Promise((ok) => central.once('exit', ok));
  central.kill('SIGTERM');
  await done;
  central = null;
}

async function startProxy() {
  proxy = spawn(PROXY, ['--upstream', `127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'inherit'] });
  const proxyPort = await new Promise((ok, fail) => {
    proxy.stdout.on('data', (d) => {
      const m = String(d).match(/listening on (\d+)/);
      if (m) ok(Number(m[1]));
    });
    proxy.once('exit', () => fail(new Error('the fault proxy exited')));
  });
  proxyUrl = `http://127.0.0.1:${proxyPort}`;
}

/** Sets the proxy's faults: `pace/20000/`, `hold/`, `clear`. */
async function proxyFault(path) {
  const r = await fetch(`${proxyUrl}/__proxy/${path}`, { method: 'POST' });
  assert.equal(r.status, 200, `proxy fault ${path}`);
}

async function shot(name) {
  mkdirSync(SHOTS, { recursive: true });
  writeFileSync(join(SHOTS, `${name}.png`), await wd.fullPageScreenshot());
}

before(async () => {
  mkdirSync(WORK, { recursive: true });
  port = await freePort();
  centralUrl = `http://127.0.0.1:${port}`;
  cpis('demo', '--flags', '2000');
  cpis('la', '--ods', LA, '--name', 'Testvale Borough Council (synthetic)', '--emergency-phone', '0300 555 0999', '--office-phone', '0300 556 0999', '--region', REGION);
  const csv = [
    'nhs_number,family_name,given_names,date_of_birth,plan_kind,start_date,end_date,due_date,local_id,delete_date',
    `${FLAGGED_ONLINE},Brookfield,Casey,2018-04-09,CPPI,${isoDaysAgo(120)},,,TV-0001,`,
    `${FLAGGED_ONLINE},Brookfield,Casey,2018-04-09,LACI,${isoDaysAgo(700)},${isoDaysAgo(200)},,TV-0001,`,
    `${FLAGGED_OFFLINE},Marshwood,Rowan,2020-11-23,LACI,${isoDaysAgo(30)},,,TV-0002,`,
  ].join('\n');
  writeFileSync(join(WORK, 'upload.csv'), `${csv}\n`);
  cpis('import', '--la', LA, join(WORK, 'upload.csv'));
  const enrolOut = cpis('enrol', '--region', REGION, '--org', 'RX6', '--setting', 'ambulance', '--org-name', 'North East Ambulance Service (synthetic)');
  process.env.E2E_ENROL_CODE = enrolOut.trim().split('\n').at(-1).trim();
  cpis('user', '--id', 'e2e.para', '--name', 'Robin Paramedic', '--org', 'RX6', '--activity', 'B0107', '--role', 'Paramedic');
  await startCentral();
  await startProxy();
  // The app's FHIR door on a free port, set the way a trust's device management would.
  doorPort = await freePort();
  if (process.env.CPIS_DEVICE_DIR) {
    mkdirSync(process.env.CPIS_DEVICE_DIR, { recursive: true });
    writeFileSync(join(process.env.CPIS_DEVICE_DIR, 'fhir-door.json'), JSON.stringify({ port: doorPort }));
  }
  await wd.start(APP);
});

after(async () => {
  await wd.quit();
  await stopCentral();
  proxy?.kill();
});

test('the window is the product', async () => {
  assert.equal(await wd.title(), 'CP-IS Field');
  if (process.env.DISPLAY && hasCommand('xwininfo')) {
    const tree = execFileSync('xwininfo', ['-root', '-tree'], { encoding: 'utf8' });
    assert.match(tree, /"CP-IS Field"/, 'a native window is titled CP-IS Field');
  }
  await wd.waitForSelector('#enrol-form');
  const lang = await wd.exec('return document.documentElement.lang;');
  assert.equal(lang, 'en-GB');
  const hasIpc = await wd.exec('return typeof window.__TAURI_INTERNALS__?.invoke === "function";');
  assert.ok(hasIpc, 'Tauri IPC is present');
});

test('a command outside the allowed list is refused by the capability', async () => {
  const refused = await wd.exec(`
    return window.__TAURI_INTERNALS__.invoke('plugin:fs|read_text_file', { path: '/etc/hostname' })
      .then(() => 'allowed', (e) => 'refused: ' + String(e && e.message || e));`);
  assert.match(String(refused), /^refused/);
});

test('enrol this device', async () => {
  await shot('01-enrol');
  await wd.type('#central-url', proxyUrl);
  await wd.type('#enrol-code', process.env.E2E_ENROL_CODE);
  await wd.click('#enrol-submit');
  await wd.waitForSelector('#sign-in-form', { timeout: 60000 });
  assert.match(await wd.text('#main'), /North East Ambulance Service \(synthetic\), Ambulance service/);
});

test('sign in: a wrong PIN first, then the right one', async () => {
  await wd.type('#user-id', 'e2e.para');
  await wd.type('#pin', '000000');
  await wd.click('#sign-in-submit');
  await wd.waitForSelector('#error-summary', { timeout: 30000 });
  // A first sign-in on a device is checked by the central, so the wording is the central's refusal.
  assert.match(await wd.text('#error-summary'), /not right|wrong PIN/);
  await shot('02-sign-in-wrong-pin');
  await wd.type('#pin', PIN);
  await wd.click('#sign-in-submit');
  await wd.waitForSelector('#check-form', { timeout: 60000 });
  assert.match(await wd.text('#strip'), /Signed in: Robin Paramedic/);
});

test('an invalid number is refused as it is typed', async () => {
  const nine = FLAGGED_ONLINE.slice(0, 9);
  const wrong = `${nine}${(Number(FLAGGED_ONLINE[9]) + 1) % 10}`;
  await wd.type('#nhs-number', wrong);
  assert.match(await wd.text('#nhs-number-feedback'), /check digit does not match/);
  await shot('03-check-invalid');
  await wd.click('#check-submit');
  assert.equal(await wd.exec('return document.body.dataset.screen;'), 'check');
});

test('a miss', async () => {
  await wd.type('#nhs-number', MISS);
  await wd.click('#check-submit');
  await wd.waitForSelector('#caveats', { timeout: 30000 });
  assert.equal(await wd.text('#result-heading'), 'No CP-IS record found for this NHS number');
  assert.match(await wd.text('#data-age'), /^Data from (this device's copy|the central service), last updated/);
  const body = (await wd.text('body')).toLowerCase();
  assert.ok(!body.includes('not at risk') && !body.includes('no concerns'));
  await shot('04-result-miss');
  await wd.click('#check-again');
});

test('a flagged child: the record exists, the alert opens, the LA is told', async () => {
  await wd.waitForSelector('#check-form');
  await wd.type('#nhs-number', FLAGGED_ONLINE);
  await wd.type('#case-ref', 'E2E-INC-1');
  await wd.click('#check-submit');
  await wd.waitForSelector('#open-alert', { timeout: 30000 });
  assert.match(await wd.text('#found-callout'), /A CP-IS record exists for this NHS number/);
  assert.equal(await wd.text('#open-alert-hint'), 'The local authority holding the plan will be told you opened this record');
  await shot('05-result-found');
  await wd.click('#open-alert');
  await wd.waitForSelector('#plans', { timeout: 30000 });
  assert.match(await wd.text('#result-heading'), /Casey BROOKFIELD|Casey Brookfield/i);
  assert.match(await wd.text('#plans'), /Child protection plan/);
  assert.match(await wd.text('#plans'), /Open/);
  assert.match(await wd.text('#local-authority'), /Testvale Borough Council \(synthetic\)/);
  assert.equal(await wd.exec('return document.getElementById("call-emergency").getAttribute("href");'), 'tel:03005550999');
  assert.match(await wd.text('#notification'), /Sent to the local authority|Queued/);
  assert.match(await wd.text('#access-history'), /accesses from unscheduled care/);
  await shot('06-alert-opened');
  await wd.click('#check-again');
});

test('the app\'s FHIR door answers a CareTeam search as the national API does', { skip: !process.env.CPIS_DEVICE_DIR }, async () => {
  const token = readFileSync(join(process.env.CPIS_DEVICE_DIR, 'fhir-door.token'), 'utf8').trim();
  const url = `http://127.0.0.1:${doorPort}/fhir/R4/CareTeam?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|${FLAGGED_ONLINE}`;
  const headers = { Authorization: `Bearer ${token}`, TraceID: 'e2e-door-1', IsUnscheduledAccessEvent: 'false' };
  const r = await fetch(url, { headers });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /application\/fhir\+json/);
  assert.equal(r.headers.get('traceid'), 'e2e-door-1');
  const bundle = await r.json();
  assert.equal(bundle.resourceType, 'Bundle');
  assert.equal(bundle.type, 'searchset');
  const teams = bundle.entry.filter((e) => e.resource.resourceType === 'CareTeam').map((e) => e.resource);
  assert.ok(teams.length >= 1, JSON.stringify(bundle));
  assert.equal(teams[0].subject.identifier.value, FLAGGED_ONLINE);
  const refused = await fetch(url, { headers: { ...headers, Authorization: 'Bearer not-the-token' } });
  assert.equal(refused.status, 401);
});

test('offline: the check answers from this device\'s copy and the notification queues', async () => {
  await stopCentral();
  await wd.waitForSelector('#check-form');
  await wd.type('#nhs-number', FLAGGED_OFFLINE);
  await wd.click('#check-submit');
  await wd.waitForSelector('#open-alert', { timeout: 30000 });
  assert.match(await wd.text('#data-age'), /^Data from this device's copy, last updated (just now|\d+ minutes? ago)/);
  await shot('07-offline-result-found');
  const lookedAt = new Date();
  await wd.click('#open-alert');
  await wd.waitForSelector('#plans', { timeout: 30000 });
  assert.match(await wd.text('#plans'), /Looked after child/);
  assert.equal(await wd.text('#notification'), 'Queued: will be sent when this device reconnects');
  assert.match(await wd.text('#data-age'), /^Data from this device's copy/);
  await shot('08-offline-alert-queued');
  process.env.E2E_LOOKED_AT = lookedAt.toISOString();
  await wd.click('#nav-status');
  await wd.waitFor('return document.querySelector("#st-online dd")?.innerText.trim() === "Offline";', { timeout: 30000, what: 'status shows offline' });
  assert.match(await wd.text('#st-queued'), /[1-9]/);
  await shot('09-status-offline');
});

test('back online: sync now delivers the queued notification to the LA', async () => {
  await startCentral();
  await wd.click('#sync-now');
  await wd.waitFor('return document.getElementById("sync-progress")?.getAttribute("aria-valuenow") === "100";', { timeout: 60000, what: 'sync complete' });
  await wd.waitFor('return document.querySelector("#st-online dd")?.innerText.trim() === "Online";', { timeout: 30000, what: 'status shows online' });
  await shot('10-status-synced');
  const out = JSON.parse(cpis('notifications', '--la', LA, '--json'));
  const digits = (n) => String(n.nhs_number).replace(/\D/g, '');
  const offline = out.notifications.filter((n) => digits(n) === FLAGGED_OFFLINE);
  assert.equal(offline.length, 1, `one notification for ${formatNhs(FLAGGED_OFFLINE)}: ${JSON.stringify(out.notifications)}`);
  const seen = new Date(offline[0].seen_at).getTime();
  const looked = new Date(process.env.E2E_LOOKED_AT).getTime();
  assert.ok(Math.abs(seen - looked) < 60000, `seen_at ${offline[0].seen_at} is when the clinician looked (${process.env.E2E_LOOKED_AT})`);
  assert.ok(out.notifications.some((n) => digits(n) === FLAGGED_ONLINE), 'the online opening was notified too');
});

test('a weak link: checks answer while a sync crawls over a paced link and while replies are held', async () => {
  // A large upload for the device's region, so the next sync has a long page to bring down.
  const rows = numbersFrom('999960', 1500).map((n, i) => `${n},Slowbrook,Person${i},2016-02-03,LACI,${isoDaysAgo(90)},,,,`);
  const csv = ['nhs_number,family_name,given_names,date_of_birth,plan_kind,start_date,end_date,due_date,local_id,delete_date',
    `${FLAGGED_ONLINE},Brookfield,Casey,2018-04-09,CPPI,${isoDaysAgo(120)},,,TV-0001,`,
    `${FLAGGED_OFFLINE},Marshwood,Rowan,2020-11-23,LACI,${isoDaysAgo(30)},,,TV-0002,`,
    ...rows].join('\n');
  writeFileSync(join(WORK, 'upload-large.csv'), `${csv}\n`);
  cpis('import', '--la', LA, join(WORK, 'upload-large.csv'));
  await proxyFault('pace/20000/');
  // Sync now, started from the window's own command and not awaited: the page crawls in.
  await wd.exec(`
    window.__weakLink = { syncDone: false, events: [] };
    window.__TAURI_INTERNALS__.invoke('sync_now').finally(() => {
      window.__weakLink.syncDone = true;
      window.__weakLink.events.push('sync finished');
    });
    return true;`);
  await wd.click('#nav-check').catch(() => {});
  await wd.waitForSelector('#check-form', { timeout: 30000 });
  await wd.type('#nhs-number', FLAGGED_OFFLINE);
  await wd.click('#check-submit');
  await wd.waitForSelector('#open-alert', { timeout: 30000 });
  await wd.exec('window.__weakLink.events.push("crawl check answered"); return true;');
  assert.match(await wd.text('#found-callout'), /A CP-IS record exists for this NHS number/);
  await shot('11-weak-link-crawl-result');
  await wd.click('#check-again');

  // A tunnel: nothing comes back at all. The check still answers, from this device's copy.
  await proxyFault('clear');
  await proxyFault('hold/');
  await wd.waitForSelector('#check-form');
  await wd.type('#nhs-number', FLAGGED_ONLINE);
  await wd.click('#check-submit');
  await wd.waitForSelector('#open-alert', { timeout: 30000 });
  await wd.exec('window.__weakLink.events.push("held check answered"); return true;');
  assert.match(await wd.text('#data-age'), /^Data from this device's copy/);
  await shot('12-weak-link-held-result');
  await wd.click('#check-again');

  // Released: the sync ends (the held request times out, or the page arrives); the checks came first.
  await proxyFault('clear');
  await wd.waitFor('return window.__weakLink.syncDone === true;', { timeout: 90000, what: 'the sync to end' });
  const events = await wd.exec('return window.__weakLink.events;');
  assert.deepEqual(events, ['crawl check answered', 'held check answered', 'sync finished']);
});

test('search by name and date of birth: one match opens as a check does; too many shows nobody', async () => {
  await wd.click('#nav-search');
  await wd.waitForSelector('#search-form', { timeout: 30000 });
  await wd.type('#family-name', 'marshwood');
  await wd.type('#given-name', 'ROWAN');
  await wd.type('#dob-day', '23');
  await wd.type('#dob-month', '11');
  await wd.type('#dob-year', '2020');
  await wd.click('#search-submit');
  await wd.waitForSelector('#found-by-search', { timeout: 30000 });
  assert.match(await wd.text('#found-by-search'), /Found by name and date of birth/);
  assert.match(await wd.text('#found-name'), /Rowan Marshwood/);
  await shot('13-search-match');
  await wd.click('#open-alert');
  await wd.waitForSelector('#plans', { timeout: 30000 });
  await shot('14-search-match-opened');
  await wd.click('#search-again');
  await wd.waitForSelector('#search-form');
  await wd.type('#family-name', 'Slowbrook');
  await wd.type('#dob-day', '3');
  await wd.type('#dob-month', '2');
  await wd.type('#dob-year', '2016');
  await wd.click('#search-submit');
  await wd.waitForSelector('#too-many', { timeout: 30000 });
  assert.equal(await wd.exec('return document.querySelectorAll("#candidates").length;'), 0);
});
