// Unit tests of ui/src/logic.js: NHS number validation, wording, data age, sync progress, screens, idle lock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as L from '../src/logic.js';

test('valid test-range numbers validate and format 3-3-4', () => {
  for (const n of ['9990000018', '9990000026', '9990000034', '9990000050']) {
    const v = L.validateNhs(n);
    assert.equal(v.state, 'valid', n);
    assert.equal(v.formatted, `${n.slice(0, 3)} ${n.slice(3, 6)} ${n.slice(6)}`);
  }
  assert.equal(L.validateNhs('999 000 0018').state, 'valid');
  assert.equal(L.validateNhs('999-000-0018').state, 'valid');
});

test('check digit 11 means 0', () => {
  assert.equal(L.nhsCheckDigit('999000005'), 0);
  assert.equal(L.validateNhs('9990000050').state, 'valid');
});

test('a number whose check digit would be 10 is invalid with that reason', () => {
  assert.equal(L.nhsCheckDigit('999000000'), null);
  for (let last = 0; last <= 9; last += 1) {
    const v = L.validateNhs(`999000000${last}`);
    assert.equal(v.state, 'invalid');
    assert.match(v.reason, /check digit of 10/);
  }
});

test('a check digit mismatch is invalid without revealing the expected digit', () => {
  const v = L.validateNhs('9990000019');
  assert.equal(v.state, 'invalid');
  assert.match(v.reason, /check digit does not match/);
  assert.doesNotMatch(v.reason, /\b8\b/);
});

test('length and character reasons', () => {
  assert.deepEqual(L.validateNhs('').state, 'empty');
  const short = L.validateNhs('999000');
  assert.equal(short.state, 'incomplete');
  assert.equal(short.formatted, '999 000');
  assert.match(L.validateNhs('99900000181').reason, /10 digits; this has 11/);
  assert.match(L.validateNhs('999a000018').reason, /only digits/);
});

test('changing any one digit of a valid number makes it invalid', () => {
  const n = '9990000115';
  assert.equal(L.validateNhs(n).state, 'valid');
  for (let i = 0; i < 10; i += 1) {
    for (let d = 0; d <= 9; d += 1) {
      if (String(d) === n[i]) continue;
      const m = n.slice(0, i) + d + n.slice(i + 1);
      assert.equal(L.validateNhs(m).state, 'invalid', m);
    }
  }
});

test('field messages while typing and on submit', () => {
  assert.deepEqual(L.nhsFieldMessage('999 00'), { error: null, hint: '5 of 10 digits' });
  assert.match(L.nhsFieldMessage('999 00', { submitted: true }).error, /all 10 digits.*you entered 5/);
  assert.equal(L.nhsFieldMessage('', { submitted: true }).error, 'Enter the NHS number');
  assert.equal(L.nhsFieldMessage('', {}).error, null);
  assert.equal(L.nhsFieldMessage('9990000018').hint, 'Reads as 999 000 0018');
  assert.match(L.nhsFieldMessage('9990000000').error, /check digit of 10/);
});

test('dates in NHS style without time-zone drift', () => {
  assert.equal(L.formatDate('2026-03-03'), '3 March 2026');
  assert.equal(L.formatDate('2019-12-31'), '31 December 2019');
  assert.equal(L.formatDateTime('2026-11-24T19:32:00Z'), '24 November 2026 at 19:32 GMT');
  assert.equal(L.formatDateTime('2026-07-01T12:00:00Z'), '1 July 2026 at 13:00 BST');
  // 23:30 UTC in summer is already the next UK day.
  assert.equal(L.formatDateTime('2026-07-03T23:30:00Z'), '4 July 2026 at 00:30 BST');
  // Across the clock changes.
  assert.equal(L.formatDateTime('2026-03-29T00:59:00Z'), '29 March 2026 at 00:59 GMT');
  assert.equal(L.formatDateTime('2026-03-29T01:00:00Z'), '29 March 2026 at 02:00 BST');
  assert.equal(L.formatDateTime('2026-10-25T00:59:00Z'), '25 October 2026 at 01:59 BST');
  assert.equal(L.formatDateTime('2026-10-25T01:00:00Z'), '25 October 2026 at 01:00 GMT');
});

test('data age wording names the source', () => {
  assert.equal(L.dataAgeWording('cache', 3 * 3600), "Data from this device's copy, last updated 3 hours ago");
  assert.equal(L.dataAgeWording('central', 5), 'Data from the central service, last updated just now');
  assert.equal(L.dataAgeWording('cache', 60), "Data from this device's copy, last updated 1 minute ago");
  assert.equal(L.dataAgeWording('cache', 3 * 86400), "Data from this device's copy, last updated 3 days ago");
  assert.match(L.dataAgeWording('cache', null), /not yet updated/);
});

test('stale warning only when stale, with the age', () => {
  assert.equal(L.staleWarning(false, 999999), null);
  assert.match(L.staleWarning(true, 2 * 86400), /out of date: it was last updated 2 days ago/);
  // A copy whose first download has not finished is never presented as merely old.
  assert.match(L.staleWarning(true, null), /has not yet finished a download from the central service, so most records may be missing/);
});

test('open-alert wording for notifying and silent readers', () => {
  assert.equal(L.openAlertWording(true).text, 'Open the alert');
  // An unborn child plan is held against the mother: the hint never says "the child's".
  assert.equal(L.openAlertWording(true).hint, 'The local authority holding the plan will be told you opened this record');
  assert.equal(L.openAlertWording(true, 2).hint, 'Each of the 2 local authorities holding a plan will be told you opened this record');
  assert.equal(L.openAlertWording(false).hint, 'Opening this does not notify anyone (your role reads silently)');
});

test('notification wording', () => {
  assert.equal(L.notificationWording('delivered'), 'Sent to the local authority');
  assert.equal(L.notificationWording('queued'), 'Queued: will be sent when this device reconnects');
  assert.match(L.notificationWording('not_sent'), /^Not sent/);
  assert.equal(L.notificationWording(null), 'Not sent');
});

test('plan wording: kind, open end, current or ended with the last day shown', () => {
  const current = { kind: 'CPPI', kind_in_words: '', start: '2026-02-01', end: null, status: 'current' };
  assert.equal(L.planKindWording(current), 'Child protection plan');
  assert.equal(L.planEndWording(current), 'Open');
  assert.equal(L.planStatusWording(current), 'Current');
  const ended = { kind: 'LACI', start: '2024-05-10', end: '2026-01-15', status: 'ended', ended_on: '2026-01-15', shown_until: '2027-01-15' };
  assert.equal(L.planEndWording(ended), '15 January 2026');
  assert.equal(L.planStatusWording(ended), 'Ended on 15 January 2026 (shown until 15 January 2027)');
  assert.match(L.planKindWording({ kind: 'UCPI' }), /Unborn/);
  // The engine's own words win: a plan not started and an unborn plan past its due date.
  assert.equal(L.planStatusWording({ status: 'not_started', status_text: 'Starts on 4 Jan 2027' }), 'Starts on 4 Jan 2027');
  const due = { kind: 'UCPI', end: null, due: '2026-11-10', status: 'due_passed', status_text: 'Due date passed on 10 Nov 2026; shown until 8 Dec 2026' };
  assert.equal(L.planStatusWording(due), 'Due date passed on 10 Nov 2026; shown until 8 Dec 2026');
  assert.equal(L.planEndWording(due), 'Open (due 10 November 2026)');
});

test('tel links keep only digits and a leading plus', () => {
  assert.equal(L.telHref('0300 555 0101'), 'tel:03005550101');
  assert.equal(L.telHref('+44 (0)300 555-0101'), 'tel:+4403005550101');
});

test('no wording anywhere claims safety', () => {
  const texts = [L.MISS_HEADLINE, L.REFERRAL_REMINDER, ...L.DEFAULT_CAVEATS, L.LOCKED_ACTION, L.staleWarning(true, 100)];
  for (const t of texts) assert.doesNotMatch(t, /not at risk|no concerns|safe to/i);
  assert.equal(L.caveatsFor({ caveats: [] }), L.DEFAULT_CAVEATS);
  assert.deepEqual(L.caveatsFor({ caveats: ['x'] }), ['x']);
});

test('error wording: wrong PIN with attempts left, locked out, too soon', () => {
  assert.match(L.errorWording({ code: 'wrong_pin', attempts_left: 2 }), /not right\. 2 attempts left/);
  assert.match(L.errorWording({ code: 'wrong_pin', attempts_left: 1 }), /1 attempt left/);
  assert.match(L.errorWording({ code: 'wrong_pin', attempts_left: 0 }), /No attempts are left/);
  assert.match(L.errorWording({ code: 'locked_out' }), /Too many wrong PINs/);
  assert.match(L.errorWording({ code: 'too_soon', retry_after_secs: 30 }), /Wait 30 seconds/);
  assert.match(L.errorWording({ code: 'enrolment_refused', message: 'code already used' }), /refused.*code already used/);
  assert.equal(L.errorWording({ code: 'refused', message: 'the central refused: unknown user or wrong PIN' }), 'The central service refused this: unknown user or wrong PIN.');
  assert.match(L.errorWording({ code: 'no_local_unlock' }), /Connect to the network and sign in/);
  assert.equal(L.errorWording({ code: 'mystery', message: 'boom' }), 'boom');
});

test('sync progress fraction and wording', () => {
  assert.equal(L.syncFraction(null), 0);
  assert.equal(L.syncFraction({ phase: 'pull', cursor: 500, head: 1000 }), 0.45);
  assert.equal(L.syncFraction({ phase: 'pull', cursor: 0, head: 0 }), 0.05);
  assert.equal(L.syncFraction({ phase: 'push' }), 0.95);
  assert.equal(L.syncFraction({ phase: 'done' }), 1);
  assert.equal(L.syncProgressWording({ phase: 'pull', cursor: 1200, head: 2000 }), 'Downloading changes: 1,200 of 2,000');
  assert.equal(L.syncProgressWording({ phase: 'done', records: 2000, events_sent: 3 }), 'Sync complete: 3 access records sent');
  assert.equal(L.syncProgressWording({ phase: 'done', records: 2000, events_sent: 0 }), 'Sync complete');
  assert.equal(
    L.syncSummaryWording({ records: 1000, events_delivered: 1, events_queued: 0, events_dead: 0, pull_skipped: null }),
    'Sync complete: 1,000 changes received, 1 access record delivered.',
  );
  assert.equal(
    L.syncSummaryWording({ records: 0, events_delivered: 2, events_queued: 1, events_dead: 1, pull_skipped: 'not signed in' }),
    'Sync complete: 0 changes received, 2 access records delivered, 1 still waiting to send, 1 could not be delivered. Download skipped: not signed in.',
  );
});

test('screen state machine: enrol, sign in, check, result, sign out', () => {
  let s = L.initialState();
  s = L.transition(s, { type: 'status', status: { enrolled: false } });
  assert.equal(s.screen, 'enrol');
  assert.equal(L.transition(s, { type: 'navigate', screen: 'check' }).screen, 'enrol', 'no checks before enrolling');
  s = L.transition(s, { type: 'enrolled', status: { enrolled: true, signed_in_user: null } });
  assert.equal(s.screen, 'sign_in');
  assert.equal(L.transition(s, { type: 'navigate', screen: 'check' }).screen, 'sign_in', 'no checks before signing in');
  assert.equal(L.transition(s, { type: 'navigate', screen: 'status' }).screen, 'status');
  s = L.transition(s, { type: 'error', error: { code: 'wrong_pin', attempts_left: 3 } });
  assert.equal(s.screen, 'sign_in');
  assert.equal(s.error.attempts_left, 3);
  s = L.transition(s, { type: 'signed_in', status: { enrolled: true, signed_in_user: { id: 'u' } } });
  assert.equal(s.screen, 'check');
  assert.equal(s.error, null);
  s = L.transition(s, { type: 'checked', view: { outcome: 'no_record' } });
  assert.equal(s.screen, 'result');
  s = L.transition(s, { type: 'status', status: { enrolled: true, signed_in_user: { id: 'u' } } });
  assert.equal(s.screen, 'result', 'a status refresh keeps the result on screen');
  assert.ok(s.check);
  s = L.transition(s, { type: 'checked', view: { outcome: 'invalid_nhs_number' } });
  assert.equal(s.screen, 'check');
  s = L.transition(s, { type: 'idle_lock' });
  assert.equal(s.screen, 'sign_in');
  assert.equal(s.check, null, 'nothing of the last patient survives the lock');
  assert.match(s.notice, /signed out/);
  s = L.transition(s, { type: 'status', status: { enrolled: true, signed_in_user: null } });
  assert.equal(s.screen, 'sign_in');
});

test('errors that need an earlier screen move there', () => {
  const s = { ...L.initialState(), screen: 'check', status: { enrolled: true, signed_in_user: { id: 'u' } } };
  assert.equal(L.transition(s, { type: 'error', error: { code: 'revoked' } }).screen, 'enrol');
  assert.equal(L.transition(s, { type: 'error', error: { code: 'lease_expired' } }).screen, 'sign_in');
  assert.equal(L.transition(s, { type: 'error', error: { code: 'offline' } }).screen, 'check');
  const status = L.transition(s, { type: 'status', status: { enrolled: true, signed_in_user: null } });
  assert.equal(status.screen, 'sign_in', 'a lapsed sign-in leaves the check screen');
});

test('idle timer fires once after the timeout and restarts on touch', () => {
  const pending = new Map();
  let id = 0;
  const timers = { set: (fn, ms) => { pending.set(++id, { fn, ms }); return id; }, clear: (h) => pending.delete(h) };
  let fired = 0;
  const t = L.createIdleTimer(300000, () => { fired += 1; }, timers);
  t.touch();
  assert.equal(pending.size, 0, 'touch before start does nothing');
  t.start();
  assert.equal(pending.size, 1);
  t.touch();
  assert.equal(pending.size, 1, 'touch replaces the timer');
  const [[, only]] = [...pending];
  assert.equal(only.ms, 300000);
  pending.clear();
  only.fn();
  assert.equal(fired, 1);
  assert.equal(t.armed, false);
  t.touch();
  assert.equal(pending.size, 0, 'a fired timer stays spent until the next sign-in');
  t.start();
  t.stop();
  assert.equal(t.armed, false);
  assert.equal(L.DEFAULT_IDLE_TIMEOUT_MS, 5 * 60 * 1000);
});

test('the idle timer warns before it signs out, and use of the screen withdraws the warning', () => {
  const pending = new Map();
  let id = 0;
  const timers = { set: (fn, ms) => { pending.set(++id, { fn, ms }); return id; }, clear: (h) => pending.delete(h) };
  const seen = [];
  const t = L.createIdleTimer(300000, () => seen.push('idle'), timers, {
    warnMs: L.IDLE_WARNING_MS, onWarn: () => seen.push('warn'), onActive: () => seen.push('active'),
  });
  t.start();
  const byMs = () => new Map([...pending.values()].map((p) => [p.ms, p.fn]));
  assert.deepEqual([...byMs().keys()].sort((a, b) => a - b), [240000, 300000]);
  byMs().get(240000)();
  assert.deepEqual(seen, ['warn']);
  assert.equal(t.warned, true);
  t.touch();
  assert.deepEqual(seen, ['warn', 'active'], 'staying withdraws the warning');
  assert.equal(t.warned, false);
  const fns = byMs();
  fns.get(240000)();
  fns.get(300000)();
  assert.deepEqual(seen, ['warn', 'active', 'warn', 'idle'], 'sign-out always follows a warning');
});

test('a sync the clinician started is announced at each quarter of the download and when sending starts', () => {
  const started = { phase: 'pull', pages: 0, records: 0, bytes: 0, cursor: 0, head: 0, events_sent: 0 };
  const pull = (cursor, head) => ({ ...started, cursor, head });
  assert.equal(L.syncAnnouncement(started, pull(100, 1000)), null, 'under a quarter: nothing new');
  assert.equal(L.syncAnnouncement(pull(100, 1000), pull(260, 1000)), 'Downloading changes: 25% done');
  assert.equal(L.syncAnnouncement(pull(260, 1000), pull(400, 1000)), null, 'same quarter: quiet');
  assert.equal(L.syncAnnouncement(started, pull(2500, 5000)), 'Downloading changes: 50% done');
  assert.equal(L.syncAnnouncement(pull(700, 1000), pull(1000, 1000)), null, 'a full download is announced by the outcome');
  assert.equal(L.syncAnnouncement(pull(1000, 1000), { ...started, phase: 'push', events_sent: 1 }), 'Sending access records');
  assert.equal(L.syncAnnouncement({ ...started, phase: 'push' }, { ...started, phase: 'push', events_sent: 2 }), null);
  assert.equal(L.syncAnnouncement(pull(1000, 1000), { ...started, phase: 'done' }), null);
});

test('the status strip words the source and age of the answer on screen as the answer does, else the device copy', () => {
  const status = { data_age_seconds: 3 * 3600, stale: true };
  assert.deepEqual(L.stripSourceAndAge(status, null), { text: "Data from this device's copy, last updated 3 hours ago", stale: true });
  const central = { source: 'central', data_age_seconds: 5, stale: false };
  assert.deepEqual(L.stripSourceAndAge(status, central), { text: L.dataAgeWording('central', 5), stale: false });
  assert.equal(L.stripSourceAndAge(status, central).text, 'Data from the central service, last updated just now');
  assert.equal(L.stripSourceAndAge({ data_age_seconds: null }, null).text, "Data from this device's copy, not yet updated from the central service");
});

test('the appearance follows the device unless Light or Dark was chosen', () => {
  assert.deepEqual(L.APPEARANCES.map((a) => a.label), ['Follow the device', 'Light', 'Dark']);
  assert.equal(L.appearanceChoice(null), 'device');
  assert.equal(L.appearanceChoice('dark'), 'dark');
  assert.equal(L.appearanceChoice('light'), 'light');
  assert.equal(L.appearanceChoice('sepia'), 'device');
});

test('the date of birth is composed from day, month and year, and only real dates pass', () => {
  assert.deepEqual(L.composeDob('7', '3', '2019'), { value: '2019-03-07' });
  assert.deepEqual(L.composeDob(' 07 ', '03', '2019'), { value: '2019-03-07' });
  assert.match(L.composeDob('', '', '').error, /Enter the date of birth/);
  assert.match(L.composeDob('7', '3', '19').error, /day, month and year/);
  assert.match(L.composeDob('31', '2', '2019').error, /real date/);
  assert.match(L.composeDob('29', '2', '2019').error, /real date/);
  assert.deepEqual(L.composeDob('29', '2', '2020'), { value: '2020-02-29' });
});

test('an engine error about a search field links to that field', () => {
  assert.equal(L.searchErrorField('family name: enter the family name (surname)'), 'family-name');
  assert.equal(L.searchErrorField('date of birth: it is in the future'), 'dob-day');
  assert.equal(L.searchErrorField('postcode district: enter the first half'), 'postcode');
  assert.equal(L.searchErrorField('something else'), null);
});

test('a search answer moves to the right screen: a match is the check result, marked as found by search', () => {
  const signedIn = { ...L.initialState(), screen: 'search', status: { enrolled: true, signed_in_user: { id: 'u' } } };
  const match = L.transition(signedIn, { type: 'searched', view: { outcome: 'match', search_id: 's', found_by: 'name_and_date_of_birth', matched: { family_name: 'X' }, candidates: [], check_id: 'c', nhs_number: '999 000 0018' } });
  assert.equal(match.screen, 'result');
  assert.equal(match.check.outcome, 'record_found');
  assert.equal(match.check.check_id, 'c');
  assert.equal(match.check.found.matched.family_name, 'X');
  const opened = L.transition(match, { type: 'opened', view: { outcome: 'record_found', opened: true } });
  assert.ok(opened.check.found, 'still marked as found by search once opened');
  assert.equal(L.transition(signedIn, { type: 'searched', view: { outcome: 'too_many' } }).screen, 'search');
  assert.equal(L.transition(signedIn, { type: 'searched', view: { outcome: 'possible_matches', candidates: [] } }).screen, 'search_result');
  assert.equal(L.transition(signedIn, { type: 'searched', view: { outcome: 'no_match' } }).screen, 'search_result');
  assert.equal(L.screenAllowed('search', { enrolled: true, signed_in_user: null }), false, 'searching needs a signed-in person');
});

test('the emergency numbers filter by name or ODS code, ignoring case, spaces and punctuation', () => {
  const las = [
    { ods: '812', name: 'Northfield Borough Council' },
    { ods: 'E815', name: 'Southmoor City Council' },
    { ods: '813', name: 'St. Aldwyn County Council' },
  ];
  assert.deepEqual(L.filterEmergencyNumbers(las, '').map((l) => l.ods), ['812', 'E815', '813']);
  assert.deepEqual(L.filterEmergencyNumbers(las, '  ').length, 3);
  assert.deepEqual(L.filterEmergencyNumbers(las, 'st aldwyn').map((l) => l.ods), ['813']);
  assert.deepEqual(L.filterEmergencyNumbers(las, 'e815').map((l) => l.ods), ['E815']);
  assert.deepEqual(L.filterEmergencyNumbers(las, 'council').length, 3);
  assert.deepEqual(L.filterEmergencyNumbers(las, 'Westerby'), []);
  assert.equal(L.emergencyCountWording(3, 3, ''), '3 local authorities in this region');
  assert.equal(L.emergencyCountWording(1, 3, 'st'), '1 of 3 local authorities shown');
  assert.match(L.emergencyCountWording(0, 3, 'x'), /No local authority in this region matches “x”\. Clear the search to see all 3\./);
  assert.match(L.emergencyAsOfWording({ generated_at: null }), /has not received/);
  assert.match(L.emergencyAsOfWording({ generated_at: '2026-07-01T22:30:00Z' }), /1 July 2026 at 23:30 BST/);
});

test('what enrolment asks for follows the organisation’s settings', () => {
  const cases = [
    [null, 'address_and_code'],
    [{ central_url: null, enrols_by_itself: false, problem: 'the managed configuration /etc/x.json is not valid JSON' }, 'address_and_code'],
    [{ central_url: 'https://cpis.example.org', enrols_by_itself: false, problem: null }, 'code'],
    [{ central_url: 'https://cpis.example.org', enrols_by_itself: true, problem: null }, 'nothing'],
  ];
  for (const [managed, asks] of cases) assert.equal(L.enrolAsks(managed), asks, JSON.stringify(managed));
  const refused = { code: 'enrolment_refused', message: 'code already used' };
  assert.match(L.enrolErrorWording(refused, { automatic: true }), /^This device could not enrol itself with your organisation’s settings\. The central service refused this enrolment code: code already used/);
  assert.equal(L.enrolErrorWording(refused), L.errorWording(refused));
  const s = L.transition(L.initialState(), { type: 'enrolled', status: { enrolled: true }, notice: L.MANAGED_ENROLLED_NOTICE });
  assert.equal(s.screen, 'sign_in');
  assert.equal(s.notice, L.MANAGED_ENROLLED_NOTICE);
});
