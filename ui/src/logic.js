// Pure logic of the clinician's screens: NHS number validation, wording, and the screen state machine.
// No DOM and no Tauri here, so all of it is unit-tested under plain Node.

// ---------------------------------------------------------------------------------------------
// NHS numbers
// ---------------------------------------------------------------------------------------------

/** Digits of an input, ignoring the spaces and dashes people type between groups. */
export function nhsDigits(input) {
  return String(input ?? '').replace(/[\s-]/g, '');
}

/** Groups up to 10 digits as 3-3-4 ("999 000 0018"); longer input is returned as typed. */
export function formatNhs(digits) {
  const d = String(digits ?? '');
  if (!/^\d*$/.test(d) || d.length > 10) return d;
  return [d.slice(0, 3), d.slice(3, 6), d.slice(6, 10)].filter(Boolean).join(' ');
}

/** The Modulus 11 check digit of the first nine digits, or null when it would be 10 (no such number). */
export function nhsCheckDigit(nineDigits) {
  let sum = 0;
  for (let i = 0; i < 9; i += 1) sum += Number(nineDigits[i]) * (10 - i);
  const check = 11 - (sum % 11);
  if (check === 11) return 0;
  if (check === 10) return null;
  return check;
}

/**
 * Validates an NHS number as it is typed.
 * state: 'empty' | 'incomplete' (fewer than 10 digits, nothing wrong yet) | 'valid' | 'invalid'.
 * `reason` says why when invalid; `formatted` is the 3-3-4 form of what was typed.
 */
export function validateNhs(input) {
  const digits = nhsDigits(input);
  if (digits.length === 0) return { state: 'empty', digits, formatted: '', reason: null };
  if (!/^\d+$/.test(digits)) {
    return {
      state: 'invalid',
      digits,
      formatted: digits,
      reason: 'An NHS number contains only digits (spaces and dashes are ignored)',
    };
  }
  if (digits.length < 10) {
    return { state: 'incomplete', digits, formatted: formatNhs(digits), reason: null };
  }
  if (digits.length > 10) {
    return {
      state: 'invalid',
      digits,
      formatted: digits,
      reason: `An NHS number has 10 digits; this has ${digits.length}`,
    };
  }
  const formatted = formatNhs(digits);
  const check = nhsCheckDigit(digits);
  if (check === null) {
    return {
      state: 'invalid',
      digits,
      formatted,
      reason: 'This cannot be an NHS number: its first 9 digits give a check digit of 10. Check the number was typed correctly',
    };
  }
  if (check !== Number(digits[9])) {
    // The expected digit is deliberately not shown: "correcting" the last digit could find another person.
    return {
      state: 'invalid',
      digits,
      formatted,
      reason: 'The check digit does not match: a digit is probably mistyped. Check the number again',
    };
  }
  return { state: 'valid', digits, formatted, reason: null };
}

/** What to show under the field while typing, and the error to show when the clinician submits. */
export function nhsFieldMessage(input, { submitted = false } = {}) {
  const v = validateNhs(input);
  if (v.state === 'valid') return { error: null, hint: `Reads as ${v.formatted}` };
  if (v.state === 'invalid') return { error: v.reason, hint: null };
  if (v.state === 'empty') {
    return { error: submitted ? 'Enter the NHS number' : null, hint: null };
  }
  const n = v.digits.length;
  return submitted
    ? { error: `Enter all 10 digits of the NHS number (you entered ${n})`, hint: null }
    : { error: null, hint: `${n} of 10 digits` };
}

// ---------------------------------------------------------------------------------------------
// Dates, times and ages
// ---------------------------------------------------------------------------------------------

const MONTHS = [
  'January', 'February', 'March', 'April', 'May', 'June',
  'July', 'August', 'September', 'October', 'November', 'December',
];

/** "2026-03-03" -> "3 March 2026" (NHS style), without any time-zone shift. */
export function formatDate(isoDate) {
  if (!isoDate) return '';
  const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(isoDate);
  if (!m) return String(isoDate);
  return `${Number(m[3])} ${MONTHS[Number(m[2]) - 1]} ${m[1]}`;
}

/** An instant shown in UK local time, marked GMT or BST: "24 November 2026 at 19:32 GMT". */
export function formatDateTime(iso, timeZone = 'Europe/London') {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const parts = new Intl.DateTimeFormat('en-GB', {
    timeZone, day: 'numeric', month: 'long', year: 'numeric', hour: '2-digit', minute: '2-digit', hourCycle: 'h23', timeZoneName: 'short',
  }).formatToParts(d);
  const get = (t) => parts.find((p) => p.type === t)?.value ?? '';
  // en-GB names Europe/London's zones GMT and BST; "GMT+1" would be a browser without the names.
  const zone = get('timeZoneName').replace(/^GMT\+1$/, 'BST');
  return `${get('day')} ${get('month')} ${get('year')} at ${get('hour')}:${get('minute')} ${zone}`.trim();
}

/** A duration in words: "less than a minute", "1 minute", "3 hours", "2 days". */
export function humanDuration(seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  const plural = (n, unit) => `${n} ${unit}${n === 1 ? '' : 's'}`;
  if (s < 60) return 'less than a minute';
  const minutes = Math.round(s / 60);
  if (minutes < 90) return plural(minutes, 'minute');
  const hours = Math.round(s / 3600);
  if (hours < 48) return plural(hours, 'hour');
  return plural(Math.round(s / 86400), 'day');
}

/** "3 hours ago", "just now", or "never" when there is no age. */
export function agoWording(seconds) {
  if (seconds === null || seconds === undefined) return 'never';
  if (seconds < 60) return 'just now';
  return `${humanDuration(seconds)} ago`;
}

export function sourceWording(source) {
  return source === 'central' ? 'the central service' : "this device's copy";
}

/** "Data from this device's copy, last updated 3 hours ago". Always on screen with a result. */
export function dataAgeWording(source, ageSeconds) {
  if (ageSeconds === null || ageSeconds === undefined) {
    return `Data from ${sourceWording(source)}, not yet updated from the central service`;
  }
  return `Data from ${sourceWording(source)}, last updated ${agoWording(ageSeconds)}`;
}

/**
 * What the status strip says about where data comes from and how old it is: with an answer on screen,
 * that answer's source and age in the very words shown under it; otherwise this device's copy.
 */
export function stripSourceAndAge(status, view) {
  if (view?.source) return { text: dataAgeWording(view.source, view.data_age_seconds), stale: Boolean(view.stale) };
  return { text: dataAgeWording('cache', status?.data_age_seconds), stale: Boolean(status?.stale) };
}

/** The stale warning, or null when the data is fresh enough. */
export function staleWarning(stale, ageSeconds) {
  if (!stale) return null;
  const age = ageSeconds === null || ageSeconds === undefined ? 'has not yet finished a download from the central service, so most records may be missing' : `was last updated ${agoWording(ageSeconds)}`;
  return `This device's copy is out of date: it ${age}. Records added since then are not shown. Connect to sync, or phone the local authority emergency duty team if you are unsure.`;
}

// ---------------------------------------------------------------------------------------------
// Result wording
// ---------------------------------------------------------------------------------------------

export const MISS_HEADLINE = 'No CP-IS record found for this NHS number';
export const FOUND_HEADLINE = 'A CP-IS record exists for this NHS number';
export const LOCKED_HEADLINE = "This device's copy cannot be opened";
export const LOCKED_ACTION = "Phone the local authority emergency duty team or use your trust's safeguarding pathway";
export const INVALID_HEADLINE = 'This is not a valid NHS number';

/** What the check could not see, shown with every miss even if the engine sent none. */
export const DEFAULT_CAVEATS = [
  "Changes made since this device's copy was last updated",
  'Children whose record is marked sensitive (they cannot carry a flag)',
  'Children not matched to an NHS number',
  'Children looked after by local authorities outside England (Wales and Scotland keep their own registers)',
];

export function caveatsFor(view) {
  return view.caveats && view.caveats.length ? view.caveats : DEFAULT_CAVEATS;
}

export const REFERRAL_REMINDER =
  'If you are worried about this person, follow your safeguarding procedures and make a referral as you would without this check.';

// ---------------------------------------------------------------------------------------------
// Search by name and date of birth
// ---------------------------------------------------------------------------------------------

export const SEARCH_HEADLINE = 'Search by name and date of birth';
export const SEARCH_MISS_HEADLINE = 'No CP-IS record found for these details';
export const SEARCH_POSSIBLE_HEADLINE = 'Possible matches';
export const SEARCH_TOO_MANY_HEADLINE = 'Too many people match these details';
export const SEARCH_FOUND_NOTE = 'Found by name and date of birth, not by a verified NHS number: make sure this is your patient before opening the alert.';
export const SEARCH_CONFIRM_HINT = 'No plan details are shown until you confirm which person is your patient. If none of them is, choose none of these.';

/** What a name search could not see, beside the NHS-number miss caveats; used if the engine sent none. */
export const SEARCH_CAVEATS = [
  ...DEFAULT_CAVEATS,
  'Names change: a child may be held under another name',
  'Names are spelt in different ways: try other spellings, or check by NHS number when you have it',
  'The local authority may not have matched the child to an NHS number',
];

/**
 * The date of birth from the three fields of the NHS date input, as YYYY-MM-DD, or the message to
 * show. Only completeness and the calendar are checked here; the engine checks the rest.
 */
export function composeDob(day, month, year) {
  const d = String(day ?? '').trim();
  const m = String(month ?? '').trim();
  const y = String(year ?? '').trim();
  if (!d && !m && !y) return { error: 'Enter the date of birth' };
  if (!/^\d{1,2}$/.test(d) || !/^\d{1,2}$/.test(m) || !/^\d{4}$/.test(y)) {
    return { error: 'Enter the date of birth as day, month and year, for example 7 3 2019' };
  }
  const date = new Date(Date.UTC(Number(y), Number(m) - 1, Number(d)));
  if (date.getUTCFullYear() !== Number(y) || date.getUTCMonth() !== Number(m) - 1 || date.getUTCDate() !== Number(d)) {
    return { error: 'Enter a real date of birth' };
  }
  return { value: `${y}-${m.padStart(2, '0')}-${d.padStart(2, '0')}` };
}

/** Which field an engine error names (its message starts with the field), for the error summary link. */
export function searchErrorField(message) {
  const m = String(message ?? '').toLowerCase();
  if (m.startsWith('family name')) return 'family-name';
  if (m.startsWith('given name')) return 'given-name';
  if (m.startsWith('date of birth')) return 'dob-day';
  if (m.startsWith('sex')) return 'sex-female';
  if (m.startsWith('postcode')) return 'postcode';
  return null;
}

/**
 * The button to open a found record, and the hint that says who will be told: the local authority
 * holding the plan (for an unborn child plan that is not "the child's"), or each of several.
 */
export function openAlertWording(notifies, localAuthorities = 1) {
  let hint = 'Opening this does not notify anyone (your role reads silently)';
  if (notifies) {
    hint = localAuthorities > 1
      ? `Each of the ${localAuthorities} local authorities holding a plan will be told you opened this record`
      : 'The local authority holding the plan will be told you opened this record';
  }
  return { text: 'Open the alert', hint };
}

export function notificationWording(state) {
  switch (state) {
    case 'delivered':
      return 'Sent to the local authority';
    case 'queued':
      return 'Queued: will be sent when this device reconnects';
    case 'not_sent':
      return 'Not sent (your role reads silently)';
    default:
      return 'Not sent';
  }
}

const PLAN_KINDS = {
  CPPI: 'Child protection plan',
  LACI: 'Looked after child',
  UCPI: 'Unborn child protection plan (pre-birth plan)',
};

export function planKindWording(plan) {
  return plan.kind_in_words || PLAN_KINDS[plan.kind] || plan.kind;
}

export function planEndWording(plan) {
  if (plan.end) return formatDate(plan.end);
  return plan.due ? `Open (due ${formatDate(plan.due)})` : 'Open';
}

export function planStatusWording(plan) {
  if (plan.status_text) return plan.status_text;
  if (plan.status === 'current') return 'Current';
  const ended = plan.ended_on || plan.end;
  const until = plan.shown_until ? ` (shown until ${formatDate(plan.shown_until)})` : '';
  return `Ended on ${formatDate(ended)}${until}`;
}

// ---------------------------------------------------------------------------------------------
// Emergency numbers (shown while the copy is locked)
// ---------------------------------------------------------------------------------------------

export const EMERGENCY_NUMBERS_HEADING = 'Emergency duty numbers';

/**
 * The local authorities whose name or ODS code contains `query` (any case, spaces and punctuation
 * ignored, so "st helens" finds "St. Helens"). An empty query keeps them all, in the order given.
 */
export function filterEmergencyNumbers(las, query) {
  const fold = (t) => String(t ?? '').toLowerCase().normalize('NFKD').replace(/[\u0300-\u036f]/g, '').replace(/[^a-z0-9]/g, '');
  const q = fold(query);
  const all = Array.isArray(las) ? las : [];
  if (!q) return all;
  return all.filter((la) => fold(la.name).includes(q) || fold(la.ods).includes(q));
}

/** What the list says about itself: how many are shown and, once filtered, what to do when none are. */
export function emergencyCountWording(shown, total, query) {
  const las = (n) => `${n} local ${n === 1 ? 'authority' : 'authorities'}`;
  if (!String(query ?? '').trim()) return `${las(total)} in this region`;
  if (shown === 0) return `No local authority in this region matches “${String(query).trim()}”. Clear the search to see all ${total}.`;
  return `${shown} of ${las(total)} shown`;
}

/** The line under the heading: where the numbers come from and how old they are. */
export function emergencyAsOfWording(view) {
  if (!view?.generated_at) {
    return "This device has not received its region's emergency numbers yet: they arrive the next time it connects. Until then use your trust's safeguarding pathway.";
  }
  return `The local authorities of this region, as sent by the central service on ${formatDateTime(view.generated_at)}. No sign-in is needed to see them.`;
}

/** Turns a phone number into a `tel:` link target (digits and a leading +). */
export function telHref(phone) {
  const p = String(phone ?? '').trim();
  const plus = p.startsWith('+') ? '+' : '';
  return `tel:${plus}${p.replace(/[^\d]/g, '')}`;
}

export const SETTING_WORDS = {
  ambulance: 'Ambulance service',
  'ooh-gp': 'Out-of-hours GP',
  ooh_gp: 'Out-of-hours GP',
  'emergency-department': 'Emergency department',
  emergency_department: 'Emergency department',
  'walk-in': 'Walk-in centre',
  walk_in: 'Walk-in centre',
  'minor-injuries': 'Minor injuries unit',
  minor_injuries: 'Minor injuries unit',
  'paediatric-ward': 'Paediatric ward',
  paediatric_ward: 'Paediatric ward',
  maternity: 'Maternity unit',
  'nhs-111': 'NHS 111',
  nhs_111: 'NHS 111',
  gp: 'GP practice',
  'school-nursing': 'School nursing',
  school_nursing: 'School nursing',
  'health-visiting': 'Health visiting',
  health_visiting: 'Health visiting',
};

export function settingWording(setting) {
  if (!setting) return '';
  return SETTING_WORDS[setting] || String(setting).replace(/[-_]/g, ' ');
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/** The sentence shown for an ErrorView from a command. */
export function errorWording(err) {
  const e = err || {};
  const left = e.attempts_left;
  switch (e.code) {
    case 'wrong_pin':
      if (left === null || left === undefined) return 'The user ID or PIN is not right. Try again.';
      if (left === 0) return 'The user ID or PIN is not right. No attempts are left: sign in again when this device is online.';
      return `The user ID or PIN is not right. ${left} ${left === 1 ? 'attempt' : 'attempts'} left before signing in on this device needs a connection.`;
    case 'locked_out':
      return 'Too many wrong PINs: signing in offline is disabled on this device. Connect to the network and sign in again. Until then, phone the local authority emergency duty team or use your trust\'s safeguarding pathway.';
    case 'too_soon': {
      const wait = e.retry_after_secs ? `${e.retry_after_secs} ${e.retry_after_secs === 1 ? 'second' : 'seconds'}` : 'a moment';
      return `Too many attempts in a short time. Wait ${wait} before trying again.`;
    }
    case 'lease_expired':
      return "This device has been offline too long, so its copy is locked. Connect to the network and sign in again. Until then, phone the local authority emergency duty team or use your trust's safeguarding pathway.";
    case 'offline':
      return 'The central service cannot be reached. Check the connection and try again.';
    case 'not_enrolled':
      return 'This device is not enrolled yet. Enrol it with the one-time code from your administrator.';
    case 'enrolment_refused':
      return `The central service refused this enrolment code${e.message ? `: ${e.message}` : ''}. Ask your administrator for a new code.`;
    case 'revoked':
      return 'This device has been withdrawn by the central service and its copy removed. Ask your administrator to enrol it again.';
    case 'refused':
      return `The central service refused this: ${String(e.message || '').replace(/^the central refused:\s*/i, '') || 'no reason given'}.`;
    case 'no_local_unlock':
      return 'You have not signed in on this device before, so it cannot check your PIN offline. Connect to the network and sign in.';
    case 'not_signed_in':
      return 'Sign in again to continue.';
    case 'untrusted':
      return 'The central service sent data this device cannot trust, so nothing was changed. Tell your administrator; checks still use this device\'s copy.';
    case 'invalid_input':
      return e.message || 'Some of the details entered are not right.';
    default:
      return e.message || 'Something went wrong. Try again.';
  }
}

// ---------------------------------------------------------------------------------------------
// Enrolment set up by the organisation (the shell's managed configuration file)
// ---------------------------------------------------------------------------------------------

export const MANAGED_ENROLLING_HEADLINE = 'Enrolling this device';
export const MANAGED_ENROLLED_NOTICE = 'This device enrolled itself with the settings from your organisation.';
export const MANAGED_PROBLEM_TITLE = 'Your organisation’s settings for this device could not be used';

/**
 * What the enrol screen asks for, from the shell's view of the managed configuration:
 * `address_and_code` (not managed, or its file could not be used), `code` (the address is set by
 * the organisation) or `nothing` (the device enrols itself with the file's code).
 */
export function enrolAsks(managed) {
  if (!managed?.central_url) return 'address_and_code';
  return managed.enrols_by_itself ? 'nothing' : 'code';
}

/** The enrol screen's error: a failed automatic enrolment says that is what failed. */
export function enrolErrorWording(err, { automatic = false } = {}) {
  const wording = errorWording(err);
  return automatic ? `This device could not enrol itself with your organisation’s settings. ${wording}` : wording;
}

// ---------------------------------------------------------------------------------------------
// Sync progress
// ---------------------------------------------------------------------------------------------

/** Fraction 0..1 for the progress bar: downloading takes most of the bar, sending the rest. */
export function syncFraction(p) {
  if (!p) return 0;
  if (p.phase === 'done') return 1;
  if (p.phase === 'push') return 0.95;
  if (p.head > 0) return Math.min(1, Math.max(0, p.cursor / p.head)) * 0.9;
  return 0.05;
}

export function syncProgressWording(p) {
  if (!p) return 'Not started';
  const n = (x) => Number(x || 0).toLocaleString('en-GB');
  // A background round reports 'done' with the cache's totals, so only what was sent is worded here.
  if (p.phase === 'done') return p.events_sent ? `Sync complete: ${n(p.events_sent)} access records sent` : 'Sync complete';
  if (p.phase === 'push') return `Sending access records: ${n(p.events_sent)} sent`;
  if (p.head > 0) return `Downloading changes: ${n(p.cursor)} of ${n(p.head)}`;
  return `Downloading changes: ${n(p.records)} records`;
}

/**
 * What to say aloud as a sync the clinician started moves on: each further quarter of the download and
 * the start of sending, so a screen reader hears progress without a message for every page.
 * Null when there is nothing new to say (the outcome is announced when "Sync now" returns).
 */
export function syncAnnouncement(prev, next) {
  if (!next || next.phase === 'done') return null;
  if (next.phase === 'push') return prev?.phase === 'push' ? null : 'Sending access records';
  const quarter = (p) => (p?.phase === 'pull' && p.head > 0 ? Math.floor(Math.min(1, p.cursor / p.head) * 4) : 0);
  const q = quarter(next);
  return q > quarter(prev) && q < 4 ? `Downloading changes: ${q * 25}% done` : null;
}

/** What "Sync now" achieved, from the engine's SyncSummary. */
export function syncSummaryWording(sum) {
  const n = (x) => Number(x || 0).toLocaleString('en-GB');
  const plural = (x, one, many) => `${n(x)} ${Number(x) === 1 ? one : many}`;
  const parts = [`${plural(sum.records, 'change', 'changes')} received`, `${plural(sum.events_delivered, 'access record', 'access records')} delivered`];
  if (sum.events_queued) parts.push(`${n(sum.events_queued)} still waiting to send`);
  if (sum.events_dead) parts.push(`${n(sum.events_dead)} could not be delivered`);
  const skipped = sum.pull_skipped ? ` Download skipped: ${sum.pull_skipped}.` : '';
  return `Sync complete: ${parts.join(', ')}.${skipped}`;
}

// ---------------------------------------------------------------------------------------------
// Screens
// ---------------------------------------------------------------------------------------------

export const DEFAULT_IDLE_TIMEOUT_MS = 5 * 60 * 1000;
/** How long before the idle sign-out the clinician is warned (and can stay signed in). */
export const IDLE_WARNING_MS = 60 * 1000;

/** The screen a status calls for: enrol first, then sign in, then check. */
export function screenForStatus(status) {
  if (!status || !status.enrolled) return 'enrol';
  if (!status.signed_in_user) return 'sign_in';
  return 'check';
}

export function initialState() {
  return { screen: 'loading', status: null, check: null, error: null, progress: null, syncing: false, notice: null };
}

/** Errors that send the clinician back to an earlier screen. */
const ERROR_SCREENS = { not_enrolled: 'enrol', revoked: 'enrol', locked_out: 'sign_in', lease_expired: 'sign_in', not_signed_in: 'sign_in' };

/**
 * The state machine of the screens. Each event comes from a command's answer or a user action;
 * the next state says which screen to draw and with what.
 */
export function transition(state, event) {
  const s = { ...state };
  switch (event.type) {
    case 'status':
      s.status = event.status;
      // A status refresh moves the clinician only when the current screen is no longer allowed.
      if (s.screen === 'loading' || !screenAllowed(s.screen, s.status)) s.screen = screenForStatus(s.status);
      if (s.screen !== 'result') s.check = null;
      s.error = null;
      return s;
    case 'enrolled':
      return { ...s, status: event.status, screen: screenForStatus(event.status), error: null, notice: event.notice ?? null };
    case 'signed_in':
      return { ...s, status: event.status, screen: screenForStatus(event.status), error: null, check: null, notice: null };
    case 'signed_out':
    case 'idle_lock':
      return {
        ...s,
        status: s.status ? { ...s.status, signed_in_user: null, locked: true } : s.status,
        screen: s.status && !s.status.enrolled ? 'enrol' : 'sign_in',
        check: null,
        error: null,
        notice: event.type === 'idle_lock' ? 'You were signed out because the app was not used for a while.' : null,
      };
    case 'checked':
      if (event.view.outcome === 'invalid_nhs_number') {
        return { ...s, screen: 'check', check: event.view, error: null };
      }
      return { ...s, screen: 'result', check: event.view, error: null };
    case 'opened':
      // A person found by search stays marked as such once opened.
      return { ...s, screen: 'result', check: { ...event.view, found: s.check?.found ?? null }, error: null };
    case 'searched': {
      const v = event.view;
      if (v.outcome === 'match') {
        const { matched, search_id: searchId, found_by: foundBy, candidates, outcome, ...answer } = v;
        return { ...s, screen: 'result', check: { ...answer, outcome: 'record_found', found: { matched, searchId, foundBy } }, search: null, error: null };
      }
      if (v.outcome === 'too_many') return { ...s, screen: 'search', search: v, error: null };
      return { ...s, screen: 'search_result', search: v, error: null };
    }
    case 'chosen':
      return { ...s, screen: 'result', check: { ...event.view, found: { matched: event.card, searchId: s.search?.search_id } }, search: null, error: null };
    case 'error': {
      const screen = ERROR_SCREENS[event.error?.code] ?? s.screen;
      return { ...s, error: event.error, screen: screen === 'loading' ? 'enrol' : screen };
    }
    case 'navigate':
      if (!screenAllowed(event.screen, s.status)) return s;
      return { ...s, screen: event.screen, error: null, check: event.screen === 'result' ? s.check : null, search: null, notice: null };
    case 'sync_started':
      return { ...s, syncing: true, progress: { phase: 'pull', pages: 0, records: 0, bytes: 0, cursor: 0, head: 0, events_sent: 0 } };
    case 'sync_progress':
      return { ...s, progress: event.progress, syncing: event.progress.phase !== 'done' ? s.syncing : false };
    case 'sync_done':
      return { ...s, syncing: false, progress: s.progress ? { ...s.progress, phase: 'done' } : { phase: 'done', records: event.summary?.records ?? 0, events_sent: event.summary?.events_delivered ?? 0 }, lastSync: event.summary };
    case 'sync_failed':
      return { ...s, syncing: false, error: event.error };
    default:
      return s;
  }
}

/** Which screens a given status allows: nothing but enrolment before enrolling; checks only when signed in. */
export function screenAllowed(screen, status) {
  if (screen === 'loading') return true;
  if (!status || !status.enrolled) return screen === 'enrol';
  if (screen === 'enrol') return false;
  if (screen === 'sign_in' || screen === 'status') return true;
  return Boolean(status.signed_in_user);
}

// ---------------------------------------------------------------------------------------------
// Appearance
// ---------------------------------------------------------------------------------------------

/** Where this device remembers the appearance chosen on the status screen (read early by appearance.js). */
export const APPEARANCE_KEY = 'cpis-field.appearance';

export const APPEARANCES = [
  { value: 'device', label: 'Follow the device' },
  { value: 'light', label: 'Light' },
  { value: 'dark', label: 'Dark' },
];

/** The stored choice, or following the device when nothing (or something unknown) is stored. */
export function appearanceChoice(stored) {
  return APPEARANCES.some((a) => a.value === stored) ? stored : 'device';
}

// ---------------------------------------------------------------------------------------------
// Idle lock
// ---------------------------------------------------------------------------------------------

// Wrapped: browsers refuse setTimeout called as a method of another object ("Illegal invocation").
const defaultTimers = { set: (fn, ms) => setTimeout(fn, ms), clear: (h) => clearTimeout(h) };

/**
 * Fires `onIdle` once after `timeoutMs` without `touch()`. Timer functions are injectable so the
 * behaviour is testable without waiting.
 */
/**
 * The idle sign-out timer. With `warnMs`, `onWarn` fires that long before `onIdle` (WCAG 2.2.1: the
 * clinician is told, with a way to stay signed in, before a result is cleared); any use of the
 * screen (`touch`) restarts both and calls `onActive` when a warning was showing. Without a
 * warning phase (`warnMs` 0) it behaves as a single timer.
 */
export function createIdleTimer(timeoutMs, onIdle, timers = defaultTimers, { warnMs = 0, onWarn = () => {}, onActive = () => {} } = {}) {
  let handle = null;
  let warnHandle = null;
  let armed = false;
  let warned = false;
  const warnAfter = warnMs > 0 ? Math.max(0, timeoutMs - warnMs) : null;
  const clear = () => {
    if (handle !== null) timers.clear(handle);
    if (warnHandle !== null) timers.clear(warnHandle);
    handle = null;
    warnHandle = null;
  };
  const fire = () => {
    handle = null;
    if (!armed) return;
    armed = false;
    warned = false;
    if (warnHandle !== null) timers.clear(warnHandle);
    warnHandle = null;
    onIdle();
  };
  const warn = () => {
    warnHandle = null;
    if (!armed) return;
    warned = true;
    onWarn();
  };
  const schedule = () => {
    clear();
    handle = timers.set(fire, timeoutMs);
    if (warnAfter !== null) warnHandle = timers.set(warn, warnAfter);
  };
  return {
    start() {
      armed = true;
      warned = false;
      schedule();
    },
    touch() {
      if (!armed) return;
      schedule();
      if (warned) {
        warned = false;
        onActive();
      }
    },
    stop() {
      armed = false;
      warned = false;
      clear();
    },
    get warned() {
      return warned;
    },
    get armed() {
      return armed;
    },
  };
}
