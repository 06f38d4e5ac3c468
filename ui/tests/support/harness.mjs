// Test harness: serves ui/dist on 127.0.0.1 under the app's own CSP, launches Debian's Chromium
// through playwright-core, and opens pages with the mocked Tauri IPC installed.
import { createServer } from 'node:http';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { extname, join, normalize, resolve } from 'node:path';
import { execFileSync } from 'node:child_process';
import { chromium } from 'playwright-core';
import { installMock } from './mock-tauri.mjs';
import * as fx from './fixtures.mjs';

const here = new URL('.', import.meta.url).pathname;
export const DIST = resolve(here, '..', '..', 'dist');
const CONF = resolve(here, '..', '..', '..', 'tauri.conf.json');

/** The CSP the Tauri window enforces, taken from tauri.conf.json so the tests run under the same policy. */
export function appCsp() {
  const csp = JSON.parse(readFileSync(CONF, 'utf8')).app.security.csp;
  if (typeof csp === 'string') return csp;
  return Object.entries(csp).map(([k, v]) => `${k} ${v}`).join('; ');
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.png': 'image/png', '.svg': 'image/svg+xml', '.ico': 'image/x-icon', '.json': 'application/json' };

export function startServer() {
  if (!existsSync(join(DIST, 'index.html'))) throw new Error('ui/dist is missing: run npm --prefix ui run build');
  const csp = appCsp();
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const file = normalize(join(DIST, path === '/' ? 'index.html' : path));
    if (!file.startsWith(DIST) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'content-security-policy': csp, 'cache-control': 'no-store' });
    res.end(readFileSync(file));
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok({ server, url: `http://127.0.0.1:${server.address().port}/` })));
}

export function chromiumPath() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  for (const p of ['/usr/bin/chromium', '/usr/bin/chromium-browser']) if (existsSync(p)) return p;
  return execFileSync('which', ['chromium'], { encoding: 'utf8' }).trim();
}

export async function launch() {
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run'],
  });
}

export function scenario(overrides = {}) {
  return {
    status: fx.status(),
    pin: fx.PIN,
    user: fx.USER,
    deviceId: '0192f0a0-1111-7000-8000-00000000d001',
    checks: fx.CHECKS,
    opened: fx.OPENED,
    searches: fx.SEARCHES,
    chosen: fx.CHOSEN,
    noneOfThese: fx.NONE_OF_THESE,
    emergencyNumbers: fx.EMERGENCY_NUMBERS,
    idleTimeoutMs: 10 * 60 * 1000,
    ...overrides,
  };
}

/**
 * Opens the app with a mock scenario. Every request outside the test server, every CSP violation
 * and every page error is recorded so a test can assert there were none.
 */
export async function openApp(browser, base, scen, contextOptions = {}) {
  const context = await browser.newContext({ viewport: { width: 1024, height: 900 }, locale: 'en-GB', timezoneId: 'Europe/London', ...contextOptions });
  const page = await context.newPage();
  const problems = [];
  await context.route('**/*', (route) => {
    const u = route.request().url();
    if (u.startsWith(base)) return route.continue();
    problems.push(`request outside the bundle: ${u}`);
    return route.abort();
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolations = window.__cspViolations || [];
      window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  // Which kinds of event the app's own scripts listen for (not the driver's), so a test can show that
  // nothing waits on hover or a double tap.
  await page.addInitScript(() => {
    const add = EventTarget.prototype.addEventListener;
    window.__listenedFor = new Set();
    EventTarget.prototype.addEventListener = function listen(type, ...rest) {
      if (String(new Error().stack).includes(window.location.origin)) window.__listenedFor.add(type);
      return add.call(this, type, ...rest);
    };
  });
  await page.addInitScript(installMock, scen);
  await page.goto(base);
  return { page, context, problems };
}

export async function calls(page, cmd) {
  const all = await page.evaluate(() => window.__mock.calls);
  return cmd ? all.filter((c) => c.cmd === cmd) : all;
}

export async function cspViolations(page) {
  return page.evaluate(() => window.__cspViolations || []);
}

/** Signs in with the scenario's PIN and waits for the check screen. */
export async function signIn(page, pin = fx.PIN) {
  await page.waitForSelector('#sign-in-form');
  await page.fill('#user-id', 'para.one');
  await page.fill('#pin', pin);
  await page.click('#sign-in-submit');
}

export async function typeNhs(page, digits) {
  await page.fill('#nhs-number', '');
  await page.type('#nhs-number', digits);
}

export async function checkNumber(page, digits) {
  await typeNhs(page, digits);
  await page.click('#check-submit');
  await page.waitForSelector('body[data-screen="result"]');
}

export { fx };

const SHOTS = resolve(here, '..', '..', '..', 'artifacts', 'screenshots', 'mocked');

/** Saves a full-page screenshot under artifacts/screenshots/mocked/ (gitignored) for a person to look at. */
export async function shot(page, name) {
  const { mkdirSync } = await import('node:fs');
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}
