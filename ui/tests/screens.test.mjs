// The screens in headless Chromium with the shell's commands mocked: validation as typed, result
// wording, opening an alert, locked and stale results, sign-in errors, sync progress, keyboard and touch
// use, the light and dark appearances. Every screen state reached is swept with axe at 320, 360 and
// 1280 px in both appearances and checked for sideways scrolling (support/a11y.mjs).
import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { contrast, settle, sweep } from './support/a11y.mjs';
import { targetInfo } from './support/targets.mjs';
import { calls, checkNumber, cspViolations, fx, launch, openApp, scenario, shot, signIn, startServer, typeNhs } from './support/harness.mjs';

let browser;
let srv;
let open = null;

before(async () => {
  srv = await startServer();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  srv?.server.close();
});

afterEach(async () => {
  if (!open) return;
  const violations = await cspViolations(open.page).catch(() => []);
  const { problems } = open;
  await open.context.close();
  open = null;
  assert.deepEqual(violations, [], 'no Content-Security-Policy violations');
  assert.deepEqual(problems, [], 'no page errors and nothing fetched from outside the bundle');
});

async function app(overrides = {}) {
  open = await openApp(browser, srv.url, scenario(overrides));
  return open.page;
}

async function signedIn(overrides = {}) {
  const page = await app(overrides);
  await signIn(page);
  await page.waitForSelector('#check-form');
  return page;
}

// Visible text with runs of white space collapsed, as a screen reader would read it out.
const text = async (page, sel) => (await page.locator(sel).innerText()).replace(/\s+/g, ' ').trim();
const focusedId = (page) => page.evaluate(() => document.activeElement?.id || document.activeElement?.tagName);

test('first run shows enrolment and enrols with the central address and code', async () => {
  const page = await app({ status: fx.status({ enrolled: false, device_id: null, central_url: null, region: null }) });
  await page.waitForSelector('#enrol-form');
  await shot(page, '01-enrol');
  await sweep(page, 'enrol');
  assert.equal(await page.title(), 'CP-IS Field');
  assert.equal(await page.getAttribute('html', 'lang'), 'en-GB');
  await page.click('#enrol-submit');
  assert.match(await text(page, '#central-url-feedback'), /Enter the central service address/);
  await sweep(page, 'enrol, fields missing');
  assert.equal((await calls(page, 'enrol')).length, 0);
  await page.fill('#central-url', 'http://127.0.0.1:7443');
  await page.fill('#enrol-code', 'USED-CODE');
  await page.click('#enrol-submit');
  await page.waitForSelector('#error-summary');
  assert.match(await text(page, '#error-summary'), /refused this enrolment code: code already used/);
  await sweep(page, 'enrol refused (error summary focused)');
  assert.equal(await page.inputValue('#central-url'), 'http://127.0.0.1:7443', 'the address is kept after a refusal');
  await page.fill('#enrol-code', 'K7Q2-9XPM');
  await page.click('#enrol-submit');
  await page.waitForSelector('#sign-in-form');
  const [, second] = await calls(page, 'enrol');
  assert.deepEqual(second.args, { centralUrl: 'http://127.0.0.1:7443', code: 'K7Q2-9XPM' });
});

const MANAGED_FILE = '/etc/cpis-field/managed.json';
const notEnrolled = () => fx.status({ enrolled: false, device_id: null, central_url: null, region: null });

test('with the central address set by the organisation, enrolment asks only for the code', async () => {
  const page = await app({
    status: notEnrolled(),
    managed: { path: MANAGED_FILE, central_url: 'https://cpis.example.org', enrols_by_itself: false, problem: null },
  });
  await page.waitForSelector('#enrol-form');
  await shot(page, '01b-enrol-managed-address');
  await sweep(page, 'enrol, address set by the organisation');
  assert.equal(await page.locator('#central-url').count(), 0, 'no address field to type into');
  assert.match(await text(page, '#managed-central-url'), /Central service address https:\/\/cpis\.example\.org Set by your organisation/);
  await page.click('#enrol-submit');
  assert.match(await text(page, '#enrol-code-feedback'), /Enter the one-time enrolment code/);
  assert.equal((await calls(page, 'enrol_managed')).length, 0);
  await page.fill('#enrol-code', 'USED-CODE');
  await page.click('#enrol-submit');
  await page.waitForSelector('#error-summary');
  assert.match(await text(page, '#error-summary'), /refused this enrolment code: code already used/);
  assert.equal(await page.locator('#central-url').count(), 0, 'the address stays set after a refusal');
  await page.fill('#enrol-code', 'K7Q2-9XPM');
  await page.click('#enrol-submit');
  await page.waitForSelector('#sign-in-form');
  assert.deepEqual((await calls(page, 'enrol_managed')).map((c) => c.args), [{ code: 'USED-CODE' }, { code: 'K7Q2-9XPM' }]);
  assert.equal((await calls(page, 'enrol')).length, 0, 'the page never sends an address of its own');
});

test('with an address and a code set by the organisation, the device enrols itself and says so', async () => {
  const page = await app({
    status: notEnrolled(),
    managed: { path: MANAGED_FILE, central_url: 'https://cpis.example.org', enrols_by_itself: true, problem: null },
    managedCode: 'K7Q2-9XPM',
  });
  await page.waitForSelector('#sign-in-form');
  assert.match(await text(page, '#notice'), /This device enrolled itself with the settings from your organisation/);
  await sweep(page, 'sign in after enrolling itself');
  assert.deepEqual((await calls(page, 'enrol_managed')).map((c) => c.args), [{ code: null }], 'the code stays in the shell');
});

test('when the organisation’s code is refused, the screen says the device could not enrol itself and asks for a code', async () => {
  const page = await app({
    status: notEnrolled(),
    managed: { path: MANAGED_FILE, central_url: 'https://cpis.example.org', enrols_by_itself: true, problem: null },
    managedCode: 'USED-CODE',
  });
  await page.waitForSelector('#error-summary');
  assert.match(await text(page, '#error-summary'), /could not enrol itself with your organisation’s settings\. The central service refused this enrolment code: code already used/);
  await sweep(page, 'enrol, the organisation’s code refused');
  await page.fill('#enrol-code', 'K7Q2-9XPM');
  await page.click('#enrol-submit');
  await page.waitForSelector('#sign-in-form');
  assert.deepEqual((await calls(page, 'enrol_managed')).map((c) => c.args), [{ code: null }, { code: 'K7Q2-9XPM' }]);
});

test('a managed configuration file that cannot be used is named, and the usual enrolment follows', async () => {
  const problem = `the managed configuration ${MANAGED_FILE} was not used: "central_uri" is not a setting; the settings are "central_url" and "enrolment_code"`;
  const page = await app({ status: notEnrolled(), managed: { path: MANAGED_FILE, central_url: null, enrols_by_itself: false, problem } });
  await page.waitForSelector('#enrol-form');
  assert.match(await text(page, '#managed-problem'), /could not be used.*\/etc\/cpis-field\/managed\.json.*"central_uri" is not a setting/);
  await sweep(page, 'enrol, managed file not usable');
  await page.fill('#central-url', 'http://127.0.0.1:7443');
  await page.fill('#enrol-code', 'K7Q2-9XPM');
  await page.click('#enrol-submit');
  await page.waitForSelector('#sign-in-form');
  assert.deepEqual((await calls(page, 'enrol')).at(-1).args, { centralUrl: 'http://127.0.0.1:7443', code: 'K7Q2-9XPM' });
});

test('a device wiped by the central says why on the enrolment screen', async () => {
  const page = await app({ status: fx.status({ enrolled: false, device_id: null, wiped_reason: 'revoked by the central on 24 November 2026: device reported lost' }) });
  await page.waitForSelector('#enrol-form');
  assert.match(await text(page, '#wiped'), /device reported lost/);
  await sweep(page, 'enrol after a wipe');
});

test('an enrolled device opens at sign-in, never at enrolment', async () => {
  const page = await app();
  await page.waitForSelector('#sign-in-form');
  assert.equal(await page.locator('#enrol-form').count(), 0);
  assert.match(await text(page, '#main'), /This device: North Eastern Ambulance \(synthetic\), Ambulance service/);
  await sweep(page, 'sign in');
});

test('a wrong PIN says so with the attempts left, clears the PIN, and the right PIN signs in', async () => {
  const page = await app({ attemptsLeft: 4 });
  await signIn(page, '0000');
  await page.waitForSelector('#error-summary');
  assert.match(await text(page, '#error-summary'), /The user ID or PIN is not right\. 3 attempts left/);
  await shot(page, '02-sign-in-wrong-pin');
  await sweep(page, 'sign in, wrong PIN (error summary focused)');
  assert.equal(await focusedId(page), 'error-summary', 'the error summary takes focus');
  assert.equal(await page.inputValue('#pin'), '', 'the PIN is not kept');
  assert.equal(await page.inputValue('#user-id'), 'para.one', 'the user ID is kept');
  await signIn(page);
  await page.waitForSelector('#check-form');
  assert.deepEqual((await calls(page, 'sign_in')).at(-1).args, { userId: 'para.one', pin: fx.PIN });
  assert.match(await text(page, '#strip'), /Signed in: Alex Paramedic/);
});

test('locked out and too-soon sign-in errors are explained', async () => {
  let page = await app({ signInError: { code: 'locked_out', message: 'locked' } });
  await signIn(page);
  await page.waitForSelector('#error-summary');
  assert.match(await text(page, '#error-summary'), /Too many wrong PINs: signing in offline is disabled/);
  await sweep(page, 'sign in, locked out (error summary focused)');
  await open.context.close();
  open = null;
  page = await app({ signInError: { code: 'too_soon', message: 'slow down', retry_after_secs: 30 } });
  await signIn(page);
  await page.waitForSelector('#error-summary');
  assert.match(await text(page, '#error-summary'), /Wait 30 seconds before trying again/);
  await sweep(page, 'sign in, too soon (error summary focused)');
});

test('the NHS number validates as it is typed', async () => {
  const page = await signedIn();
  await typeNhs(page, '999000');
  assert.equal(await page.inputValue('#nhs-number'), '999 000', 'grouped 3-3-4 while typing');
  assert.match(await text(page, '#nhs-number-feedback'), /6 of 10 digits/);
  await sweep(page, 'check, number being typed');
  await typeNhs(page, '9990000000');
  assert.match(await text(page, '#nhs-number-feedback'), /Error: This cannot be an NHS number: its first 9 digits give a check digit of 10/);
  assert.equal(await page.getAttribute('#nhs-number', 'aria-invalid'), 'true');
  await typeNhs(page, '9990000019');
  assert.match(await text(page, '#nhs-number-feedback'), /The check digit does not match/);
  await shot(page, '03-check-invalid');
  await sweep(page, 'check, invalid number');
  await typeNhs(page, '99900A');
  assert.match(await text(page, '#nhs-number-feedback'), /only digits/);
  await typeNhs(page, '9990000018');
  assert.equal(await page.inputValue('#nhs-number'), '999 000 0018');
  assert.match(await text(page, '#nhs-number-feedback'), /Reads as 999 000 0018/);
  await sweep(page, 'check, valid number typed');
  assert.equal(await page.getAttribute('#nhs-number', 'aria-invalid'), null);
  const describedBy = await page.getAttribute('#nhs-number', 'aria-describedby');
  assert.match(describedBy, /nhs-number-feedback/, 'the feedback is announced with the field');
  assert.equal(await page.getAttribute('#nhs-number-feedback', 'aria-live'), 'polite');
});

test('after sign-in and after "Check another NHS number" the caret is in the NHS number field, and the heading is spoken', async () => {
  const page = await signedIn();
  assert.equal(await focusedId(page), 'nhs-number');
  await page.waitForFunction(() => document.getElementById('announcer').textContent === 'Signed in as Alex Paramedic. Check an NHS number');
  await sweep(page, 'check, just signed in (caret in the NHS number)');
  await page.keyboard.type('9990000026');
  assert.equal(await page.inputValue('#nhs-number'), '999 000 0026', 'typing goes straight into the field');
  await page.keyboard.press('Enter');
  await page.waitForSelector('body[data-screen="result"]');
  await page.click('#check-again');
  await page.waitForSelector('#check-form');
  assert.equal(await focusedId(page), 'nhs-number');
  assert.equal(await page.inputValue('#nhs-number'), '', 'the last number is not carried over');
  await page.waitForFunction(() => document.getElementById('announcer').textContent === 'Check an NHS number');
  await page.keyboard.type('9990000018');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#open-alert');
  assert.deepEqual((await calls(page, 'check_patient')).map((c) => c.args.nhsNumber), ['9990000026', '9990000018']);
});

test('an invalid or incomplete number is never sent to the engine', async () => {
  const page = await signedIn();
  await typeNhs(page, '9990000019');
  await page.click('#check-submit');
  await typeNhs(page, '99900');
  await page.click('#check-submit');
  assert.match(await text(page, '#nhs-number-feedback'), /Enter all 10 digits of the NHS number \(you entered 5\)/);
  await sweep(page, 'check, incomplete number submitted');
  assert.equal(await focusedId(page), 'nhs-number');
  assert.equal((await calls(page, 'check_patient')).length, 0);
});

test('a miss says no record found, lists the caveats, the source and data age, and never reassures', async () => {
  const page = await signedIn();
  await typeNhs(page, '9990000026');
  await page.check('#pregnant');
  await page.fill('#case-ref', 'INC-4471');
  await page.click('#check-submit');
  await page.waitForSelector('body[data-screen="result"]');
  assert.deepEqual((await calls(page, 'check_patient'))[0].args, { nhsNumber: '9990000026', pregnant: true, caseReference: 'INC-4471' });
  assert.equal(await text(page, '#result-heading'), 'No CP-IS record found for this NHS number');
  assert.equal(await focusedId(page), 'result-heading', 'focus moves to the result heading');
  await shot(page, '04-result-miss');
  await sweep(page, 'result, no record (this device)');
  const caveats = await page.locator('#caveats li').allInnerTexts();
  assert.equal(caveats.length, fx.VIEWS.miss.caveats.length);
  assert.match(caveats.join('\n'), /marked sensitive/);
  assert.match(caveats.join('\n'), /Wales and Scotland/);
  assert.equal(await text(page, '#data-age'), "Data from this device's copy, last updated 3 hours ago (24 November 2026 at 16:30 GMT)");
  assert.match(await text(page, '#main'), /make a referral as you would without this check/);
  const body = (await page.locator('body').innerText()).toLowerCase();
  for (const banned of ['not at risk', 'no concerns', 'no risk', 'safe to']) assert.ok(!body.includes(banned), banned);
  await page.waitForFunction(() => document.getElementById('announcer').textContent.includes('No CP-IS record found'));
});

test('an answer from the central service says so, in the same words in the status strip and under it', async () => {
  const page = await signedIn();
  assert.equal(await text(page, '#strip-age'), "Data from this device's copy, last updated 3 hours ago");
  await checkNumber(page, '9990000069');
  assert.match(await text(page, '#data-age'), /^Data from the central service, last updated just now/);
  assert.equal(await text(page, '#strip-age'), 'Data from the central service, last updated just now');
  assert.ok((await text(page, '#data-age')).startsWith(await text(page, '#strip-age')));
  await sweep(page, 'result, no record (central service)');
});

test('a stale copy shows a visible warning with the data age', async () => {
  const page = await signedIn();
  await checkNumber(page, '9990000050');
  assert.ok(await page.locator('#stale-warning').isVisible());
  await shot(page, '05-result-stale');
  await sweep(page, 'result, no record, stale copy');
  assert.match(await text(page, '#stale-warning'), /out of date: it was last updated 3 days ago/);
  assert.match(await text(page, '#data-age'), /last updated 3 days ago/);
});

test('a stale device warns on the check screen too', async () => {
  const page = await signedIn({ status: fx.status({ stale: true, data_age_seconds: 2 * 86400 }) });
  assert.match(await text(page, '#stale-warning'), /last updated 2 days ago/);
  assert.match(await text(page, '#strip'), /Out of date/);
  assert.equal(await focusedId(page), 'nhs-number');
  await page.waitForFunction(() => document.getElementById('announcer').textContent.includes('Important: This device’s copy is out of date'));
  await sweep(page, 'check, stale copy');
});

test('a record found: notifying button wording, open the alert, plans, LA phones, history, notification', async () => {
  const page = await signedIn();
  await checkNumber(page, '9990000018');
  assert.match(await text(page, '#found-callout'), /A CP-IS record exists for this NHS number/);
  assert.equal(await focusedId(page), 'result-heading');
  assert.equal((await text(page, '#open-alert')).trim(), 'Open the alert');
  assert.equal(await text(page, '#open-alert-hint'), 'The local authority holding the plan will be told you opened this record');
  assert.equal(await page.getAttribute('#open-alert', 'aria-describedby'), 'open-alert-hint');
  assert.equal(await page.locator('#person').count(), 0, 'nothing about the person before opening');
  await shot(page, '06-result-found');
  await sweep(page, 'result, record found (notifying)');
  await page.click('#open-alert');
  await page.waitForSelector('#plans');
  assert.deepEqual((await calls(page, 'open_alert'))[0].args, { checkId: fx.CHECK_IDS.found });
  await shot(page, '07-alert-opened');
  await sweep(page, 'alert opened (online)');
  assert.match(await text(page, '#result-heading'), /CP-IS record: Jamie Lee TESTER/);
  assert.equal(await text(page, '#person-dob dd'), '4 July 2019');
  assert.equal(await text(page, '#person-nhs dd'), '999 000 0018');
  assert.equal(await text(page, '#person-local-id dd'), 'NBC-000123');
  const rows = await page.locator('#plans tbody tr').allInnerTexts();
  assert.match(rows[0], /Child protection plan\s+Northfield Borough Council \(synthetic\)\s+1 February 2026\s+Open\s+Current/);
  assert.match(rows[1], /Looked after child\s+Northfield Borough Council \(synthetic\)\s+10 May 2024\s+15 January 2026\s+Ended on 15 Jan 2026; shown until 15 Jan 2027/);
  assert.equal(await page.getAttribute('#call-emergency', 'href'), 'tel:03005550101');
  assert.match(await text(page, '#call-emergency'), /Call the emergency duty team: 0300 555 0101/);
  assert.equal(await page.getAttribute('#call-office', 'href'), 'tel:03005550202');
  const box = await page.locator('#call-emergency').boundingBox();
  assert.ok(box.height >= 48, `emergency call target is ${box.height}px high`);
  const history = await page.locator('#access-history tbody tr').allInnerTexts();
  assert.equal(history.length, 2);
  assert.match(await text(page, '#access-history-heading'), /Accesses to Jamie Lee TESTER's record from unscheduled care/);
  assert.match(history[0], /23 November 2026 at 22:15 GMT\s+Synthetic Ambulance Service \(RX9\)\s+Paramedic\s+Ambulance service/);
  assert.equal(await text(page, '#notification'), 'Queued: will be sent when this device reconnects');
  assert.match(await text(page, '#data-age'), /this device's copy, last updated 3 hours ago/);
  assert.equal(await focusedId(page), 'result-heading');
});

test('a silent reader is told opening does not notify, and the notification is not sent', async () => {
  const page = await signedIn({ user: fx.SILENT_USER });
  await checkNumber(page, '9990000034');
  assert.equal(await text(page, '#open-alert-hint'), 'Opening this does not notify anyone (your role reads silently)');
  await sweep(page, 'result, record found (silent reader)');
  assert.doesNotMatch(await text(page, '#main'), /will be told/);
  await page.click('#open-alert');
  await page.waitForSelector('#plans');
  assert.match(await text(page, '#plans'), /Unborn child protection plan/);
  assert.match(await text(page, '#notification'), /^Not sent/);
  assert.equal(await page.locator('#call-office').count(), 0, 'no office number when the LA has none');
  assert.match(await text(page, '#plans'), /Due date passed on 10 Nov 2026; shown until 8 Dec 2026/);
  assert.doesNotMatch(await text(page, '#plans'), /Ended/);
  assert.equal(await text(page, '#access-history'), 'Access history is held by the central service and cannot be shown offline.');
  assert.doesNotMatch(await text(page, '#main'), /No accesses/);
  await sweep(page, 'alert opened (silent reader, no history)');
});

test('a child who moved: each plan shows its local authority, both LAs with their numbers, and the opened alert keeps every caveat', async () => {
  const page = await signedIn();
  await checkNumber(page, '9990000077');
  assert.equal(await text(page, '#open-alert-hint'), 'Each of the 2 local authorities holding a plan will be told you opened this record');
  await page.click('#open-alert');
  await page.waitForSelector('#plans');
  const rows = await page.locator('#plans tbody tr').allInnerTexts();
  assert.match(rows[0], /Child protection plan\s+Southmoor City Council \(synthetic\)\s+10 October 2026\s+Open\s+Current/);
  assert.match(rows[1], /Child protection plan\s+Northfield Borough Council \(synthetic\)\s+1 January 2025\s+1 October 2026\s+Ended on 1 Oct 2026/);
  assert.match(rows[2], /Looked after child\s+Southmoor City Council \(synthetic\)\s+4 January 2027\s+Open\s+Starts on 4 Jan 2027/);
  assert.doesNotMatch(rows[2], /Current/);
  assert.equal(await page.getAttribute('#call-emergency', 'href'), 'tel:03005550303');
  assert.equal(await page.getAttribute('#call-emergency-2', 'href'), 'tel:03005550101');
  assert.match(await text(page, '#la-heading-2'), /Northfield Borough Council/);
  const caveats = await page.locator('#alert-caveats li').allInnerTexts();
  assert.equal(caveats.length, 2);
  assert.match(caveats[0], /last updated 19:30 GMT, 24 Nov 2026/);
  assert.equal(await text(page, '#access-history'), 'Access history is held by the central service and cannot be shown offline.');
  await sweep(page, 'alert opened (child who moved)');
});

test('offline: the strip says so and the opened alert queues its notification', async () => {
  const page = await signedIn({ status: fx.status({ online: false }) });
  assert.match(await text(page, '#strip-online'), /Offline/);
  await checkNumber(page, '9990000018');
  await page.click('#open-alert');
  await page.waitForSelector('#plans');
  assert.equal(await text(page, '#notification'), 'Queued: will be sent when this device reconnects');
  await sweep(page, 'alert opened (offline)');
});

test('a locked copy says it cannot be opened and what to do instead', async () => {
  const page = await signedIn();
  await checkNumber(page, '9990000042');
  assert.match(await text(page, '#result-heading'), /This device's copy cannot be opened/);
  assert.match(await text(page, '#locked-reason'), /Offline access ended/);
  await shot(page, '08-result-locked');
  await sweep(page, 'result, copy locked');
  assert.equal(await text(page, '#locked-action'), "Phone the local authority emergency duty team or use your trust's safeguarding pathway");
  assert.equal(await focusedId(page), 'result-heading');
});

// --- Emergency numbers while the copy is locked -------------------------------------------------

const shownLas = (page) => page.locator('#en-list li:not([hidden]) h3').allInnerTexts();

test('a locked copy lists the region\'s emergency duty numbers beside the instruction to phone, searchable by name or ODS code', async () => {
  const page = await signedIn();
  await checkNumber(page, '9990000042');
  await page.waitForSelector('#en-list');
  assert.equal(await text(page, '#locked-action'), "Phone the local authority emergency duty team or use your trust's safeguarding pathway");
  assert.deepEqual(await shownLas(page), [
    'Northfield Borough Council (synthetic) (812)', 'Southmoor City Council (synthetic) (815)', 'St. Aldwyn County Council (synthetic) (813)',
  ]);
  assert.equal(await page.getAttribute('#en-call-812', 'href'), 'tel:03005550101');
  assert.equal(await page.getAttribute('#en-office-815', 'href'), 'tel:03005550404');
  assert.equal(await page.locator('#en-office-813').count(), 0, 'no office number is made up');
  assert.match(await text(page, '#en-call-812'), /Call Northfield Borough Council \(synthetic\) emergency duty team on 0300 555 0101/);
  assert.match(await text(page, '#en-as-of'), /24 November 2026 at 16:30 GMT\. No sign-in is needed/);
  assert.equal(await text(page, '#en-count'), '3 local authorities in this region');
  await shot(page, '08b-result-locked-numbers');
  await sweep(page, 'result, copy locked, emergency numbers');

  await page.fill('#en-filter', 'st aldwyn');
  assert.deepEqual(await shownLas(page), ['St. Aldwyn County Council (synthetic) (813)']);
  assert.equal(await text(page, '#en-count'), '1 of 3 local authorities shown');
  await page.fill('#en-filter', '815');
  assert.deepEqual(await shownLas(page), ['Southmoor City Council (synthetic) (815)'], 'found by ODS code');
  await sweep(page, 'result, copy locked, emergency numbers filtered');
  await page.fill('#en-filter', 'Westerby');
  assert.deepEqual(await shownLas(page), []);
  assert.match(await text(page, '#en-count'), /No local authority in this region matches “Westerby”\. Clear the search to see all 3\./);
  await sweep(page, 'result, copy locked, no LA matches');
  assert.ok((await calls(page, 'emergency_numbers')).length >= 1);
});

// Whether the emergency numbers come before the sign-in form.
const numbersFirst = (page) => page.evaluate(() => {
  const list = document.getElementById('emergency-numbers');
  const form = document.getElementById('sign-in-form');
  return Boolean(list.compareDocumentPosition(form) & Node.DOCUMENT_POSITION_FOLLOWING);
});

test('sign-in past the lease puts the emergency numbers first; otherwise they follow the form', async () => {
  let page = await app();
  await page.waitForSelector('#sign-in-form');
  await page.waitForSelector('#en-list');
  assert.equal(await page.locator('#en-list li').count(), 3);
  assert.equal(await numbersFirst(page), false, 'after the form while signing in can work');
  await open.context.close();
  open = null;

  page = await app({ signInError: { code: 'lease_expired', message: 'lease expired' } });
  await signIn(page);
  await page.waitForSelector('#error-summary');
  await page.waitForSelector('#en-list');
  assert.match(await text(page, '#locked-action'), /Phone the local authority emergency duty team/);
  assert.ok(await numbersFirst(page), 'the numbers come before the sign-in form');
  await page.fill('#en-filter', 'north');
  assert.deepEqual(await shownLas(page), ['Northfield Borough Council (synthetic) (812)']);
  await shot(page, '02b-sign-in-lease-expired-numbers');
  await sweep(page, 'sign in, lease expired, emergency numbers');
});

test('emergency numbers the engine cannot trust, or has not received, are not shown and it says why', async () => {
  let page = await signedIn({
    emergencyNumbersError: { code: 'emergency_numbers_untrusted', message: 'the emergency numbers cannot be trusted (their signature does not match); they are not shown' },
  });
  await checkNumber(page, '9990000042');
  await page.waitForSelector('#en-error');
  assert.match(await text(page, '#en-error'), /cannot be trusted.*not shown/);
  assert.equal(await page.locator('#en-list').count(), 0);
  await sweep(page, 'result, copy locked, emergency numbers refused');
  await open.context.close();
  open = null;

  page = await signedIn({ emergencyNumbers: { region: 'NE', generated_at: null, local_authorities: [] } });
  await checkNumber(page, '9990000042');
  await page.waitForFunction(() => /has not received/.test(document.getElementById('en-as-of')?.textContent ?? ''));
  assert.equal(await page.locator('#en-list').count(), 0);
});

test('sync now drives the progress bar from sync-progress events', async () => {
  const page = await signedIn();
  await page.click('#nav-status');
  await page.waitForSelector('#status-list');
  assert.equal(await page.evaluate(() => window.__mock.listenerCount('sync-progress')), 1);
  assert.equal(await text(page, '#st-online dd'), 'Online');
  assert.equal(await text(page, '#st-records dd'), '2,000');
  assert.equal(await text(page, '#st-queued dd'), '2 (oldest 40 minutes old)');
  assert.match(await text(page, '#st-dead dd'), /^1/);
  assert.match(await text(page, '#dead-letters'), /rejected: unknown region/);
  assert.equal(await text(page, '#st-lease dd'), '27 November 2026 at 16:30 GMT');
  assert.equal(await text(page, '#st-device dd'), '0192f0a0-1111-7000-8000-00000000d001');
  assert.match(await text(page, '#st-last-sync dd'), /24 November 2026 at 16:30 GMT \(3 hours ago\)/);
  await sweep(page, 'sync and status');
  await page.click('#sync-now');
  await settle(page);
  assert.equal(await focusedId(page), 'sync-now', 'focus stays on Sync now while it works');
  assert.equal(await page.getAttribute('#sync-now', 'aria-disabled'), 'true');
  await page.waitForFunction(() => document.getElementById('announcer').textContent === 'Sync started');
  await page.keyboard.press('Enter');
  assert.equal((await calls(page, 'sync_now')).length, 1, 'one sync at a time');
  const width = () => page.evaluate(() => document.getElementById('sync-bar').getBoundingClientRect().width);
  const now = () => page.getAttribute('#sync-progress', 'aria-valuenow').then(Number);
  const emit = (p) => page.evaluate((payload) => window.__mock.emit('sync-progress', payload), p);
  await emit({ phase: 'pull', pages: 1, records: 500, bytes: 1000, cursor: 2500, head: 5000, events_sent: 0 });
  assert.equal(await now(), 45);
  await page.waitForFunction(() => document.getElementById('announcer').textContent === 'Downloading changes: 50% done');
  await settle(page);
  assert.equal(await focusedId(page), 'sync-now');
  await shot(page, '09-sync-progress');
  await sweep(page, 'sync and status, syncing');
  assert.match(await text(page, '#sync-text'), /Downloading changes: 2,500 of 5,000/);
  await page.waitForTimeout(300);
  const w1 = await width();
  await emit({ phase: 'pull', pages: 2, records: 1000, bytes: 2000, cursor: 5000, head: 5000, events_sent: 0 });
  await emit({ phase: 'push', pages: 2, records: 1000, bytes: 2000, cursor: 5000, head: 5000, events_sent: 2 });
  assert.equal(await now(), 95);
  await page.waitForFunction(() => document.getElementById('announcer').textContent === 'Sending access records');
  await page.waitForTimeout(300);
  const w2 = await width();
  assert.ok(w2 > w1 && w1 > 0, `bar grows: ${w1} -> ${w2}`);
  await page.evaluate(() => { window.__mock.setStatus({ queued_events: 0, oldest_queued_age_seconds: null }); window.__mock.finishSync({ pages: 2, records: 1000, bytes: 2000, cursor: 5000, events_delivered: 2, events_dead: 0, events_queued: 0, pull_skipped: null }); });
  await page.waitForFunction(() => document.getElementById('sync-progress')?.getAttribute('aria-valuenow') === '100');
  await page.waitForFunction(() => document.getElementById('st-queued')?.innerText.includes('0'));
  await page.waitForFunction(() => document.getElementById('sync-text')?.innerText.includes('changes received'));
  assert.equal(await text(page, '#sync-text'), 'Sync complete: 1,000 changes received, 2 access records delivered.');
  assert.equal((await text(page, '#sync-now')).trim(), 'Sync now');
  await page.waitForFunction(() => document.getElementById('announcer').textContent.startsWith('Sync complete: 1,000 changes received'));
  await settle(page);
  assert.equal(await focusedId(page), 'sync-now', 'focus is still on Sync now after the sync');
  assert.equal(await page.getAttribute('#sync-now', 'aria-disabled'), null);
  await sweep(page, 'sync and status, synced');
});

test('a failed sync moves focus to the error summary, which says why', async () => {
  const page = await signedIn();
  await page.click('#nav-status');
  await page.waitForSelector('#status-list');
  await page.click('#sync-now');
  await settle(page);
  assert.equal(await focusedId(page), 'sync-now');
  await page.evaluate(() => window.__mock.failSync('offline'));
  await page.waitForSelector('#error-summary');
  assert.equal(await focusedId(page), 'error-summary');
  assert.match(await text(page, '#error-summary'), /The central service cannot be reached/);
  assert.equal(await page.getAttribute('#sync-now', 'aria-disabled'), null, 'Sync now can be pressed again');
  await sweep(page, 'sync and status, sync failed (error summary focused)');
});

test('background sync events reach the status screen without pressing Sync now', async () => {
  const page = await signedIn();
  await page.click('#nav-status');
  await page.waitForSelector('#status-list');
  await page.evaluate(() => window.__mock.emit('sync-progress', { phase: 'pull', pages: 1, records: 10, bytes: 10, cursor: 1, head: 4, events_sent: 0 }));
  assert.equal(await page.getAttribute('#sync-progress', 'aria-valuenow'), '23');
});

test('a background sync refreshes the status screen without moving focus', async () => {
  const page = await signedIn();
  await page.click('#nav-status');
  await page.waitForSelector('#status-list');
  await page.focus('#sync-now');
  await page.evaluate(() => {
    window.__mock.setStatus({ cached_flags: 2500 });
    window.__mock.emit('sync-progress', { phase: 'done', pages: 0, records: 2500, bytes: 0, cursor: 2500, head: 2500, events_sent: 0 });
  });
  await page.waitForFunction(() => document.querySelector('#st-records dd')?.innerText === '2,500');
  assert.equal(await focusedId(page), 'sync-now');
  assert.equal(await text(page, '#sync-text'), 'Sync complete');
});

test('keyboard only: Tab and Enter through a check and opening the alert', async () => {
  const page = await signedIn();
  assert.equal(await focusedId(page), 'nhs-number');
  await page.keyboard.type('9990000018');
  await page.keyboard.press('Tab');
  assert.equal(await focusedId(page), 'pregnant');
  await page.keyboard.press('Tab');
  assert.equal(await focusedId(page), 'case-ref');
  await page.keyboard.type('CAD 55');
  await page.keyboard.press('Tab');
  assert.equal(await focusedId(page), 'check-submit');
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).boxShadow);
  assert.notEqual(outline, 'none', 'the focused button shows focus');
  await page.keyboard.press('Enter');
  await page.waitForSelector('body[data-screen="result"]');
  assert.equal(await focusedId(page), 'result-heading');
  await page.keyboard.press('Tab');
  assert.equal(await focusedId(page), 'open-alert');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#plans');
  assert.equal(await focusedId(page), 'result-heading');
  assert.deepEqual((await calls(page, 'check_patient'))[0].args, { nhsNumber: '9990000018', pregnant: false, caseReference: 'CAD 55' });
  await page.keyboard.press('Tab');
  assert.equal(await focusedId(page), 'call-emergency', 'the emergency number comes first after the heading');
});

test('touch targets are at least 48px', async () => {
  const page = await signedIn();
  for (const sel of ['#nhs-number', '#case-ref', '#check-submit', '#nav-status', '#nav-sign-out']) {
    const box = await page.locator(sel).boundingBox();
    assert.ok(box.height >= 48, `${sel} is ${box.height}px high`);
  }
  const tick = await page.evaluate(() => {
    const s = getComputedStyle(document.querySelector('label[for="pregnant"]'), '::before');
    return parseFloat(s.height);
  });
  assert.ok(tick >= 40, `checkbox box is ${tick}px`);
});

test('touch in a vehicle: each primary action is one tap on a target at least 44 x 44 px with clear space around it', async () => {
  open = await openApp(browser, srv.url, scenario(), { hasTouch: true, isMobile: true, viewport: { width: 360, height: 640 } });
  const { page } = open;
  const checked = [];
  // Measured at each width the app must work at, in the state where the action is offered.
  const measure = async (sel) => {
    for (const width of [320, 360, 1280]) {
      await page.setViewportSize({ width, height: 640 });
      const t = await targetInfo(page, sel);
      assert.ok(t, `${sel} is on screen`);
      assert.ok(t.width >= 44 && t.height >= 44, `${sel} at ${width}px is ${t.width.toFixed(0)} x ${t.height.toFixed(0)}`);
      assert.ok(t.gap >= 12, `${sel} at ${width}px is ${t.gap.toFixed(0)}px from ${t.nearest}`);
    }
    await page.setViewportSize({ width: 360, height: 640 });
    checked.push(sel);
  };
  await page.waitForSelector('#sign-in-form');
  await measure('#nav-check');
  await measure('#sign-in-submit');
  await page.tap('#user-id');
  await page.keyboard.type('para.one');
  await page.tap('#pin');
  await page.keyboard.type(fx.PIN);
  await page.tap('#sign-in-submit');
  await page.waitForSelector('#check-form');
  await measure('#check-submit');
  await page.keyboard.type('9990000018');
  await page.tap('#check-submit');
  await page.waitForSelector('#open-alert');
  assert.equal((await calls(page, 'check_patient')).length, 1, 'one tap checks');
  await measure('#open-alert');
  await page.tap('#open-alert');
  await page.waitForSelector('#plans');
  assert.equal((await calls(page, 'open_alert')).length, 1, 'one tap opens the alert');
  await measure('#call-emergency');
  // The phone call itself leaves the app, so the tap is caught here: one tap is one activation.
  await page.evaluate(() => document.getElementById('call-emergency').addEventListener('click', (e) => { e.preventDefault(); window.__called = (window.__called || 0) + 1; }));
  await page.tap('#call-emergency');
  assert.equal(await page.evaluate(() => window.__called), 1, 'one tap places the call');
  await page.tap('#nav-status');
  await page.waitForSelector('#sync-now');
  await measure('#sync-now');
  await page.tap('#sync-now');
  assert.equal((await calls(page, 'sync_now')).length, 1, 'one tap starts a sync');
  assert.deepEqual(checked, ['#nav-check', '#sign-in-submit', '#check-submit', '#open-alert', '#call-emergency', '#sync-now']);
  const listened = await page.evaluate(() => [...window.__listenedFor]);
  assert.ok(listened.includes('click'), 'the app\'s own listeners are seen');
  for (const hoverOrDouble of ['dblclick', 'mouseover', 'mouseenter', 'mouseout', 'mouseleave']) {
    assert.ok(!listened.includes(hoverOrDouble), `nothing waits for ${hoverOrDouble}`);
  }
  // Nothing is shown, hidden or resized only under a pointer (decorative ::before/::after aside).
  const hoverReveals = await page.evaluate(() => {
    const out = [];
    const walk = (rules) => {
      for (const rule of rules) {
        if (rule.cssRules && !rule.selectorText) walk(rule.cssRules);
        else if (rule.selectorText) {
          for (const sel of rule.selectorText.split(',')) {
            if (!sel.includes(':hover') || /::?(before|after)\s*$/.test(sel.trim())) continue;
            const props = [...rule.style].filter((p) => /^(display|visibility|opacity|max-height|height|clip|clip-path|overflow)/.test(p));
            if (props.length) out.push(`${sel.trim()} { ${props.join(', ')} }`);
          }
        }
      }
    };
    for (const sheet of document.styleSheets) walk(sheet.cssRules);
    return out;
  });
  assert.deepEqual(hoverReveals, []);
});

test('night use: the status screen switches between following the device, light and dark, and the device remembers', async () => {
  const page = await signedIn();
  const pageColour = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  const isDark = async () => contrast(await pageColour(), 'rgb(0, 0, 0)') < 2;
  await page.click('#nav-status');
  await page.waitForSelector('#appearance-device');
  assert.ok(await page.isChecked('#appearance-device'), 'follows the device until told otherwise');
  await page.emulateMedia({ colorScheme: 'dark' });
  assert.ok(await isDark(), 'a device set to dark gives the dark appearance');
  await page.emulateMedia({ colorScheme: 'light' });
  assert.ok(!(await isDark()));
  await page.check('#appearance-dark');
  assert.ok(await isDark(), 'Dark on a light device');
  assert.equal(await focusedId(page), 'appearance-dark', 'choosing does not move focus');
  await sweep(page, 'sync and status, Dark chosen');
  await page.reload();
  await page.waitForSelector('#sign-in-form');
  assert.ok(await isDark(), 'still dark after the app is reopened, before anyone signs in');
  await page.click('#nav-status');
  await page.waitForSelector('#appearance-dark');
  assert.ok(await page.isChecked('#appearance-dark'));
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.check('#appearance-light');
  assert.ok(!(await isDark()), 'Light on a dark device');
  await page.reload();
  await page.waitForSelector('#sign-in-form');
  assert.ok(!(await isDark()), 'Light is remembered too');
  await page.click('#nav-status');
  await page.check('#appearance-device');
  assert.ok(await isDark(), 'following the device again');
  await page.emulateMedia({ colorScheme: 'light' });
  assert.ok(!(await isDark()));
});

test('the flagged-record callout and the emergency call button stay unmistakable in both appearances', async () => {
  const page = await signedIn();
  await checkNumber(page, '9990000018');
  const look = (sel) => page.evaluate((s) => {
    const cs = getComputedStyle(document.querySelector(s));
    return { fill: cs.backgroundColor, text: cs.color, frame: cs.borderTopColor, frameWidth: parseFloat(cs.borderTopWidth), page: getComputedStyle(document.body).backgroundColor };
  }, sel);
  const callout = async (scheme) => {
    const band = await look('#found-callout .nhsuk-card__heading');
    assert.equal(band.fill, 'rgb(255, 235, 59)', `${scheme}: the callout keeps the NHS yellow band`);
    assert.ok(contrast(band.text, band.fill) >= 7, `${scheme}: its heading reads at ${contrast(band.text, band.fill).toFixed(1)}:1`);
    const card = await look('#found-callout');
    assert.ok(card.frameWidth >= 4, `${scheme}: a ${card.frameWidth}px frame`);
    assert.ok(contrast(card.frame, card.page) >= 3, `${scheme}: the callout's frame stands out from the page at ${contrast(card.frame, card.page).toFixed(1)}:1`);
  };
  for (const scheme of ['light', 'dark']) {
    await page.emulateMedia({ colorScheme: scheme });
    await callout(scheme);
  }
  await page.click('#open-alert');
  await page.waitForSelector('#call-emergency');
  for (const scheme of ['light', 'dark']) {
    await page.emulateMedia({ colorScheme: scheme });
    await callout(scheme);
    const call = await look('#call-emergency');
    assert.equal(call.fill, 'rgb(213, 40, 27)', `${scheme}: the call button stays emergency red`);
    assert.ok(contrast(call.fill, call.page) >= 3, `${scheme}: the call button stands out from the page at ${contrast(call.fill, call.page).toFixed(1)}:1`);
    assert.ok(contrast(call.text, call.fill) >= 4.5, `${scheme}: its label reads at ${contrast(call.text, call.fill).toFixed(1)}:1`);
  }
});

test('idle sign-out warns first with a way to stay signed in, and the result survives staying', async () => {
  // The warning shows halfway (8 s), leaving time to read and sweep it before the sign-out at 16 s.
  const page = await signedIn({ idleTimeoutMs: 16000 });
  await checkNumber(page, '9990000018');
  await page.waitForSelector('#idle-warning', { timeout: 12000 });
  assert.match(await text(page, '#idle-warning-heading'), /You will be signed out in/);
  assert.equal(await focusedId(page), 'stay-signed-in');
  assert.equal((await calls(page, 'sign_out')).length, 0, 'the warning comes before any sign-out');
  assert.match(await text(page, '#found-callout'), /A CP-IS record exists/, 'the result is still there');
  await sweep(page, 'idle warning');
  await page.click('#stay-signed-in');
  await page.waitForSelector('#idle-warning', { state: 'detached', timeout: 2000 });
  assert.ok((await calls(page, 'keep_alive')).length >= 1, 'staying tells the engine too');
  assert.equal((await calls(page, 'sign_out')).length, 0);
  assert.match(await text(page, '#found-callout'), /A CP-IS record exists/);
});

test('the app signs out and hides the patient after being idle', async () => {
  const page = await signedIn({ idleTimeoutMs: 600 });
  await checkNumber(page, '9990000026');
  await page.waitForSelector('#idle-warning', { timeout: 5000 });
  await page.waitForSelector('#sign-in-form', { timeout: 5000 });
  assert.equal(await page.locator('#idle-warning').count(), 0, 'the warning goes with the sign-out');
  assert.equal((await calls(page, 'sign_out')).length, 1);
  assert.match(await text(page, '#notice'), /signed out because the app was not used for a while/);
  assert.doesNotMatch(await text(page, 'body'), /999 000 0026/);
  await sweep(page, 'sign in after the idle lock');
});

test('sign out from the menu returns to sign-in', async () => {
  const page = await signedIn();
  await page.click('#nav-sign-out');
  await page.waitForSelector('#sign-in-form');
  assert.equal((await calls(page, 'sign_out')).length, 1);
  assert.ok(await page.locator('#nav-sign-out').isHidden());
  await page.click('#nav-status');
  await page.waitForSelector('#status-list');
  assert.equal(await text(page, '#st-user dd'), 'No one');
  await sweep(page, 'sync and status, signed out');
  assert.equal(await text(page, '#nav-check'), 'Sign in');
  await page.click('#nav-check');
  await page.waitForSelector('#sign-in-form');
});

test('only the shell commands and the sync-progress listener are used', async () => {
  const page = await signedIn();
  await checkNumber(page, '9990000018');
  await page.click('#open-alert');
  await page.waitForSelector('#plans');
  const used = new Set((await calls(page)).map((c) => c.cmd));
  const allowed = new Set(['app_status', 'enrol', 'sign_in', 'sign_out', 'check_patient', 'open_alert', 'search_patient', 'choose_candidate', 'none_of_these', 'sync_now', 'keep_alive', 'emergency_numbers', 'plugin:event|listen']);
  for (const c of used) assert.ok(allowed.has(c), `unexpected command ${c}`);
});

// --- Search by name and date of birth -----------------------------------------------------------

async function searchFor(page, { family, given = '', day, month, year }) {
  await page.fill('#family-name', family);
  await page.fill('#given-name', given);
  await page.fill('#dob-day', day);
  await page.fill('#dob-month', month);
  await page.fill('#dob-year', year);
  await page.click('#search-submit');
}

test('search by name: the form checks what is missing, a single match shows who was found before the alert opens, and opening is the check\'s open', async () => {
  const page = await signedIn();
  await page.click('#to-search');
  await page.waitForSelector('#search-form');
  assert.equal(await text(page, '#screen-heading'), 'Search by name and date of birth');
  assert.equal(await page.getAttribute('#nav-search', 'aria-current'), 'page');
  await shot(page, '20-search');
  await sweep(page, 'search form');
  await page.click('#search-submit');
  assert.match(await text(page, '#family-name-feedback'), /Enter the family name/);
  assert.match(await text(page, '#dob-feedback'), /Enter the date of birth/);
  assert.equal(await focusedId(page), 'family-name');
  await sweep(page, 'search form, fields missing');
  await searchFor(page, { family: 'Smith', day: '31', month: '2', year: '2019' });
  assert.match(await text(page, '#dob-feedback'), /Enter a real date of birth/);
  assert.equal((await calls(page, 'search_patient')).length, 0, 'nothing is sent until the form is complete');

  await searchFor(page, { family: "O'Neill", given: 'Siân', day: '7', month: '3', year: '2019' });
  await page.waitForSelector('#found-by-search');
  const [sent] = await calls(page, 'search_patient');
  assert.deepEqual(sent.args, {
    familyName: "O'Neill", dateOfBirth: '2019-03-07', givenName: 'Siân', sex: null, postcodeDistrict: null, caseReference: null,
  });
  assert.match(await text(page, '#result-heading'), /A CP-IS record exists/);
  assert.match(await text(page, '#found-by-search'), /Found by name and date of birth, not by a verified NHS number/);
  assert.match(await text(page, '#found-name'), /Siân O'Neill/);
  assert.match(await text(page, '#found-matched'), /Family name: the same apart from accents/);
  assert.equal(await page.locator('#plans').count(), 0, 'no plan details before the alert is opened');
  await shot(page, '21-search-match');
  await sweep(page, 'search: one match');
  await page.click('#open-alert');
  await page.waitForSelector('#plans');
  const [opened] = await calls(page, 'open_alert');
  assert.deepEqual(opened.args, { checkId: fx.CHECK_IDS.found }, 'opening is the same command as after a check');
  assert.match(await text(page, '#notification'), /./);
  await sweep(page, 'search: match opened');
  await page.click('#search-again');
  await page.waitForSelector('#search-form');
});

test('search by name: possible matches show who and what differed, no plans until confirmed; none of these gives the caveats', async () => {
  const page = await signedIn();
  await page.click('#nav-search');
  await searchFor(page, { family: 'Smith', given: 'John', day: '20', month: '5', year: '2018' });
  await page.waitForSelector('#candidates');
  assert.equal(await text(page, '#result-heading'), 'Possible matches');
  assert.equal(await page.locator('#candidates > li').count(), 3);
  assert.match(await text(page, '#candidate-2'), /Jon Smyth.*Born 20 May 2018.*sounds alike/);
  assert.match(await text(page, '#candidate-3-differed'), /Given name: different/);
  assert.equal(await page.locator('#plans, #local-authority').count(), 0, 'no plan or LA details on the cards');
  assert.equal(await focusedId(page), 'result-heading');
  await shot(page, '22-search-possible');
  await sweep(page, 'search: possible matches');
  await page.click('#none-of-these');
  await page.waitForSelector('#caveats');
  assert.equal(await text(page, '#result-heading'), 'No CP-IS record found for these details');
  const caveats = await text(page, '#caveats');
  for (const c of [/Names change/, /spelt/, /may not have matched/, /sensitive/]) assert.match(caveats, c);
  assert.equal((await calls(page, 'none_of_these')).length, 1);
  await sweep(page, 'search: none of these');

  await page.click('#search-again');
  await searchFor(page, { family: 'Smith', given: 'John', day: '20', month: '5', year: '2018' });
  await page.waitForSelector('#candidates');
  await page.click('#choose-1');
  await page.waitForSelector('#open-alert');
  const [chosen] = await calls(page, 'choose_candidate');
  assert.deepEqual(chosen.args, { searchId: fx.SEARCH_ID, candidate: 1 });
  assert.match(await text(page, '#found-name'), /John Smith/);
  await sweep(page, 'search: possible match confirmed');
});

test('search by name: too many asks for more and shows nobody; no match and a locked copy say so; engine errors name the field', async () => {
  const page = await signedIn();
  await page.click('#nav-search');
  await searchFor(page, { family: 'Testwood', day: '10', month: '10', year: '2017' });
  await page.waitForSelector('#too-many');
  assert.match(await text(page, '#too-many'), /Too many people match.*Add the given name/);
  assert.equal(await page.locator('#candidates').count(), 0);
  assert.equal(await page.inputValue('#family-name'), 'Testwood', 'what was entered is kept to add to');
  await shot(page, '23-search-too-many');
  await sweep(page, 'search: too many');

  await searchFor(page, { family: 'Brown', given: 'Grace', day: '7', month: '3', year: '2019' });
  await page.waitForSelector('#caveats');
  assert.equal(await text(page, '#result-heading'), 'No CP-IS record found for these details');
  assert.doesNotMatch((await text(page, '#result')).toLowerCase(), /not at risk|no concerns/);
  await shot(page, '24-search-no-match');
  await sweep(page, 'search: no match');

  await page.click('#search-again');
  await searchFor(page, { family: 'Locked', day: '7', month: '3', year: '2019' });
  await page.waitForSelector('#locked-card');
  assert.match(await text(page, '#locked-action'), /emergency duty team/);
  await page.waitForSelector('#en-list');
  assert.equal(await page.locator('#en-list li').count(), 3, 'the region\'s numbers beside it');
  await sweep(page, 'search: locked');

  await page.click('#search-again');
  await searchFor(page, { family: 'Future', day: '7', month: '3', year: '2019' });
  await page.waitForSelector('#error-summary');
  assert.match(await text(page, '#error-summary'), /date of birth: it is in the future/);
  assert.equal(await page.getAttribute('#error-summary a', 'href'), '#dob-day');
  await sweep(page, 'search: error from the engine');
});
