// The app as installed from its .deb (files unpacked into a scratch root by scripts/package-test.sh),
// driven through tauri-driver under Xvfb against a central started from the installed systemd unit.
// Each start reads a managed configuration file, as a trust's device management would place it:
// address and code (the device enrols itself), address only (only the code is asked for), and a
// file with a mistake (named on the screen; enrolment still possible).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WebDriver } from '../e2e-app/webdriver.mjs';

const need = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run scripts/package-test.sh)`);
  return v;
};
const APP = need('INSTALLED_APP');
const CPIS = need('INSTALLED_CPIS');
const CENTRAL_URL = need('CENTRAL_URL');
const WORK = need('PACKAGE_WORK');
const DRIVER = need('TAURI_DRIVER_URL');
const SHOTS = new URL('../../artifacts/screenshots/', import.meta.url).pathname;

let wd = null;

function newCode() {
  const out = execFileSync(CPIS, ['central', 'enrol', '--region', 'north-east', '--org', 'RX6', '--setting', 'ambulance',
    '--org-name', 'North East Ambulance Service (synthetic)'], { encoding: 'utf8' });
  return out.trim().split('\n').at(-1).trim();
}

function enrolledDevices() {
  return JSON.parse(execFileSync(CPIS, ['central', 'devices', '--json'], { encoding: 'utf8' }));
}

/**
 * Starts the installed binary with its own device directory and managed configuration file. The
 * driver starts the application it is given, so a small launcher sets the environment first.
 */
async function startApp(name, managedText) {
  const dir = join(WORK, name);
  mkdirSync(dir, { recursive: true });
  const managed = join(dir, 'managed.json');
  writeFileSync(managed, managedText);
  const launcher = join(dir, 'launch.sh');
  writeFileSync(launcher, [
    '#!/bin/sh',
    `export CPIS_DEVICE_DIR='${join(dir, 'device')}'`,
    `export CPIS_MANAGED_CONFIG='${managed}'`,
    `exec '${APP}' "$@" 2>>'${join(dir, 'app.log')}'`,
    '',
  ].join('\n'));
  chmodSync(launcher, 0o755);
  wd = new WebDriver(DRIVER);
  await wd.start(launcher);
  return managed;
}

async function stopApp() {
  await wd?.quit();
  wd = null;
}

const appLog = (name) => readFileSync(join(WORK, name, 'app.log'), 'utf8');

async function shot(name) {
  mkdirSync(SHOTS, { recursive: true });
  writeFileSync(join(SHOTS, `${name}.png`), await wd.screenshot());
}

after(stopApp);

test('with the address and a code in the managed file, the installed app enrols itself and says so', async () => {
  const before = enrolledDevices().length;
  const code = newCode();
  await startApp('by-itself', JSON.stringify({ central_url: CENTRAL_URL, enrolment_code: code }));
  assert.equal(await wd.title(), 'CP-IS Field');
  await wd.waitForSelector('#sign-in-form', { timeout: 60000 });
  assert.match(await wd.text('#notice'), /This device enrolled itself with the settings from your organisation/);
  assert.match(await wd.text('#main'), /North East Ambulance Service \(synthetic\), Ambulance service/);
  await shot('package-01-enrolled-itself');
  assert.equal(enrolledDevices().length, before + 1, 'the central enrolled one more device');
  await stopApp();
  const log = appLog('by-itself');
  assert.match(log, /managed configuration read/);
  assert.ok(!log.includes(code), 'the enrolment code is never logged');
});

test('with only the address in the managed file, the installed app asks for nothing but the code', async () => {
  await startApp('address-only', JSON.stringify({ central_url: CENTRAL_URL }));
  await wd.waitForSelector('#enrol-form', { timeout: 30000 });
  assert.equal(await wd.exec('return document.getElementById("central-url") === null;'), true, 'no address field');
  assert.match(await wd.text('#managed-central-url'), new RegExp(CENTRAL_URL.replace(/[.:/]/g, '\\$&')));
  await shot('package-02-enrol-code-only');
  // The shell, not only the screen, keeps the organisation's address.
  const other = await wd.exec(`
    return window.__TAURI_INTERNALS__.invoke('enrol', { centralUrl: 'http://127.0.0.1:9', code: 'ABCD-EFGH' })
      .then(() => 'enrolled', (e) => 'refused: ' + String(e && e.message || e));`);
  assert.match(String(other), /^refused: .*set by your organisation/);
  const code = newCode();
  await wd.type('#enrol-code', code);
  await wd.click('#enrol-submit');
  await wd.waitForSelector('#sign-in-form', { timeout: 60000 });
  await stopApp();
  assert.ok(!appLog('address-only').includes(code), 'the enrolment code is never logged');
});

test('a managed file with a mistake is named on the enrol screen and the app still starts', async () => {
  const managed = await startApp('bad-file', JSON.stringify({ central_uri: CENTRAL_URL }));
  await wd.waitForSelector('#managed-problem', { timeout: 30000 });
  const problem = await wd.text('#managed-problem');
  assert.ok(problem.includes(managed), `names the file: ${problem}`);
  assert.match(problem, /"central_uri" is not a setting/);
  assert.equal(await wd.exec('return document.getElementById("central-url") !== null;'), true, 'the usual address field');
  await shot('package-03-bad-managed-file');
  await stopApp();
});
