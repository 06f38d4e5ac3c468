// The clinician's screens: draws each state of logic.js into the page and wires the controls to the
// shell's commands. Wording and decisions live in logic.js; this file only builds DOM, moves focus and
// applies the chosen appearance.

import { api, onSyncProgress } from './api.js';
import {
  APPEARANCES, APPEARANCE_KEY, MANAGED_ENROLLED_NOTICE, MANAGED_ENROLLING_HEADLINE, MANAGED_PROBLEM_TITLE, enrolAsks, enrolErrorWording, DEFAULT_IDLE_TIMEOUT_MS, EMERGENCY_NUMBERS_HEADING, FOUND_HEADLINE, INVALID_HEADLINE, LOCKED_ACTION,
  LOCKED_HEADLINE, MISS_HEADLINE, REFERRAL_REMINDER, SEARCH_CAVEATS, SEARCH_CONFIRM_HINT, SEARCH_FOUND_NOTE,
  SEARCH_HEADLINE, SEARCH_MISS_HEADLINE, SEARCH_POSSIBLE_HEADLINE, SEARCH_TOO_MANY_HEADLINE, agoWording, composeDob,
  searchErrorField, appearanceChoice, caveatsFor, createIdleTimer, IDLE_WARNING_MS,
  dataAgeWording, emergencyAsOfWording, emergencyCountWording, errorWording, filterEmergencyNumbers, formatDate, formatDateTime, formatNhs, humanDuration, initialState, nhsDigits,
  nhsFieldMessage, notificationWording, openAlertWording, planEndWording, planKindWording, planStatusWording,
  settingWording, staleWarning, stripSourceAndAge, syncAnnouncement, syncFraction, syncProgressWording,
  syncSummaryWording, telHref, transition, validateNhs,
} from './logic.js';

let state = initialState();
const main = document.getElementById('main');
const announcer = document.getElementById('announcer');

// ---------------------------------------------------------------------------------------------
// DOM helpers: elements are built with text nodes only, so record data can never become markup.
// ---------------------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function heading(text, { level = 1, id = 'screen-heading', caption = null } = {}) {
  const hEl = h(`h${level}`, { id, tabindex: '-1', class: 'cpis-heading' }, text);
  if (!caption) return hEl;
  return h('div', {}, h('span', { class: 'nhsuk-caption-l' }, caption), hEl);
}

function summaryList(rows, id) {
  return h('dl', { class: 'nhsuk-summary-list', id },
    rows.filter(Boolean).map(([key, value, rowId]) => h('div', { class: 'nhsuk-summary-list__row', id: rowId },
      h('dt', { class: 'nhsuk-summary-list__key' }, key),
      h('dd', { class: 'nhsuk-summary-list__value' }, value))));
}

// The design system's responsive table: narrower than a tablet, each row stacks into label and value
// pairs so nothing scrolls sideways (WCAG 1.4.10). The roles keep the table's semantics once its rows are
// display:block, and the per-cell labels are hidden from screen readers, which read the column headers.
function table(caption, headers, rows, id) {
  return h('table', { class: 'nhsuk-table-responsive', role: 'table', id },
    h('caption', { class: 'nhsuk-table__caption nhsuk-table__caption--s' }, caption),
    h('thead', { class: 'nhsuk-table__head', role: 'rowgroup' },
      h('tr', { class: 'nhsuk-table__row', role: 'row' }, headers.map((x) => h('th', { class: 'nhsuk-table__header', scope: 'col', role: 'columnheader' }, x)))),
    h('tbody', { class: 'nhsuk-table__body' },
      rows.map((r) => h('tr', { class: 'nhsuk-table__row', role: 'row' }, r.map((x, i) => h('td', { class: 'nhsuk-table__cell', role: 'cell' },
        h('span', { class: 'nhsuk-table-responsive__heading', 'aria-hidden': 'true' }, `${headers[i]} `), x))))));
}

function field({ id, label, hint, type = 'text', inputmode, autocomplete = 'off', width = '', value = '', required = true, extra = {} }) {
  const describedBy = [hint ? `${id}-hint` : null, `${id}-feedback`].filter(Boolean).join(' ');
  return h('div', { class: 'nhsuk-form-group', id: `${id}-group` },
    h('label', { class: 'nhsuk-label nhsuk-label--s', for: id }, label),
    hint ? h('div', { class: 'nhsuk-hint', id: `${id}-hint` }, hint) : null,
    h('div', { id: `${id}-feedback`, 'aria-live': 'polite', class: 'cpis-feedback' }),
    h('input', {
      class: `nhsuk-input ${width}`, id, name: id, type, inputmode, autocomplete, spellcheck: 'false',
      autocapitalize: 'none', 'aria-describedby': describedBy, required, value, ...extra,
    }));
}

function setFieldError(id, message) {
  const group = document.getElementById(`${id}-group`);
  const input = document.getElementById(id);
  const feedback = document.getElementById(`${id}-feedback`);
  if (!group || !input || !feedback) return;
  feedback.replaceChildren();
  group.classList.toggle('nhsuk-form-group--error', Boolean(message));
  input.classList.toggle('nhsuk-input--error', Boolean(message));
  if (message) {
    input.setAttribute('aria-invalid', 'true');
    feedback.append(h('span', { class: 'nhsuk-error-message', id: `${id}-error` },
      h('span', { class: 'nhsuk-u-visually-hidden' }, 'Error: '), message));
  } else {
    input.removeAttribute('aria-invalid');
  }
}

/** The NHS error summary: announced at once, focused, and linked to the field at fault. */
function errorSummary(message, fieldId) {
  return h('div', { class: 'nhsuk-error-summary', id: 'error-summary', tabindex: '-1' },
    h('div', { role: 'alert' },
      h('h2', { class: 'nhsuk-error-summary__heading' }, 'There is a problem'),
      h('div', { class: 'nhsuk-error-summary__body' },
        h('ul', { class: 'nhsuk-list nhsuk-error-summary__list' },
          h('li', {}, fieldId
            ? h('a', { href: `#${fieldId}`, onclick: (e) => { e.preventDefault(); document.getElementById(fieldId)?.focus(); } }, message)
            : message)))));
}

function button(text, attrs = {}, variant = '') {
  return h('button', { class: `nhsuk-button ${variant}`.trim(), type: 'button', 'data-module': 'nhsuk-button', ...attrs }, text);
}

function warningCard(title, id, ...body) {
  return h('div', { class: 'nhsuk-card nhsuk-card--warning cpis-warning', id },
    h('div', { class: 'nhsuk-card__content' },
      h('h2', { class: 'nhsuk-card__heading' },
        h('span', { role: 'text' }, h('span', { class: 'nhsuk-u-visually-hidden' }, 'Important: '), title)),
      ...body));
}

function emergencyCard(title, id, ...body) {
  return h('div', { class: 'nhsuk-card nhsuk-card--care nhsuk-card--care--emergency', id },
    h('div', { class: 'nhsuk-card__heading-container' },
      h('h1', { class: 'nhsuk-card__heading cpis-heading', id: 'result-heading', tabindex: '-1' },
        h('span', { role: 'text' }, h('span', { class: 'nhsuk-u-visually-hidden' }, 'Immediate action required: '), title)),
      h('span', { class: 'nhsuk-card--care__arrow', 'aria-hidden': 'true' })),
    h('div', { class: 'nhsuk-card__content' }, ...body));
}

// --- Emergency numbers: the region's LAs, readable while the copy is locked ----------------------

// What the clinician typed to find an LA: kept across redraws of the locked screens.
let emergencyQuery = '';

/** The region's LAs with their duty numbers, searchable; filled in once the engine answers. */
function emergencyNumbersSection() {
  const section = h('section', { id: 'emergency-numbers', class: 'cpis-emergency-numbers', 'aria-labelledby': 'en-heading' },
    h('h2', { id: 'en-heading', class: 'nhsuk-heading-m' }, EMERGENCY_NUMBERS_HEADING),
    h('p', { class: 'nhsuk-body', id: 'en-as-of' }, 'Reading this device’s emergency numbers…'),
    h('div', { id: 'en-body' }));
  fillEmergencyNumbers(section);
  return section;
}

async function fillEmergencyNumbers(section) {
  let view = null;
  let failure = null;
  try {
    view = await api.emergencyNumbers();
  } catch (err) {
    failure = err;
  }
  // The screen may have moved on while the engine answered.
  if (!section.isConnected) return;
  const asOf = section.querySelector('#en-as-of');
  const body = section.querySelector('#en-body');
  if (failure) {
    asOf.replaceChildren(h('strong', { id: 'en-error' }, errorWording(failure)));
    body.replaceChildren();
    return;
  }
  asOf.textContent = emergencyAsOfWording(view);
  const las = view.local_authorities || [];
  if (!las.length) {
    body.replaceChildren();
    return;
  }
  const list = h('ul', { class: 'nhsuk-list cpis-en-list', id: 'en-list' }, las.map((la) => h('li', { class: 'cpis-en-item', 'data-ods': la.ods },
    h('h3', { class: 'nhsuk-heading-s cpis-en-name' }, `${la.name} (${la.ods})`),
    h('p', { class: 'nhsuk-body cpis-en-line' }, 'Emergency duty team: ',
      h('a', { href: telHref(la.emergency_phone), class: 'cpis-tel', id: `en-call-${la.ods}` },
        h('span', { class: 'nhsuk-u-visually-hidden' }, `Call ${la.name} emergency duty team on `), la.emergency_phone)),
    la.office_phone
      ? h('p', { class: 'nhsuk-body cpis-en-line' }, 'Office hours: ',
        h('a', { href: telHref(la.office_phone), class: 'cpis-tel', id: `en-office-${la.ods}` },
          h('span', { class: 'nhsuk-u-visually-hidden' }, `Call ${la.name} in office hours on `), la.office_phone))
      : null)));
  const count = h('p', { class: 'nhsuk-body', id: 'en-count', 'aria-live': 'polite' });
  const input = h('input', {
    class: 'nhsuk-input nhsuk-input--width-20', id: 'en-filter', name: 'en-filter', type: 'search', autocomplete: 'off',
    spellcheck: 'false', autocapitalize: 'none', 'aria-describedby': 'en-filter-hint', 'aria-controls': 'en-list', value: emergencyQuery,
  });
  const apply = () => {
    emergencyQuery = input.value;
    const shown = new Set(filterEmergencyNumbers(las, input.value).map((la) => la.ods));
    for (const li of list.children) li.hidden = !shown.has(li.dataset.ods);
    count.textContent = emergencyCountWording(shown.size, las.length, input.value);
  };
  input.addEventListener('input', apply);
  body.replaceChildren(
    h('div', { class: 'nhsuk-form-group' },
      h('label', { class: 'nhsuk-label', for: 'en-filter' }, 'Find a local authority'),
      h('div', { class: 'nhsuk-hint', id: 'en-filter-hint' }, 'Type part of its name or its ODS code'),
      input),
    count, list);
  apply();
}

let spoken = [];
function announce(text) {
  // Messages from one action are joined, so a later one (the new screen) does not replace an earlier
  // one (signed in) unheard. Clearing first makes screen readers repeat an identical message.
  if (!spoken.length) {
    announcer.textContent = '';
    setTimeout(() => {
      announcer.textContent = spoken.map((t, i) => (i < spoken.length - 1 && !/[.!?]$/.test(t) ? `${t}.` : t)).join(' ');
      spoken = [];
    }, 30);
  }
  spoken.push(text);
}

// ---------------------------------------------------------------------------------------------
// State and rendering
// ---------------------------------------------------------------------------------------------

function dispatch(event) {
  state = transition(state, event);
  render();
}

/**
 * Draws the current screen. A new screen moves focus to its heading (or its error); a redraw of the
 * same screen with fresh data (`keepFocus`) leaves focus where the clinician had it.
 */
function render({ keepFocus = false } = {}) {
  const screens = {
    loading: renderLoading, enrol: renderEnrol, sign_in: renderSignIn, check: renderCheck, result: renderResult, status: renderStatus,
    search: renderSearch, search_result: renderSearchResult,
  };
  const draw = screens[state.screen] || renderLoading;
  const focusedId = keepFocus ? document.activeElement?.id : null;
  main.replaceChildren(...[].concat(draw()));
  document.body.dataset.screen = state.screen;
  renderChrome();
  // An open idle warning keeps focus: a redraw behind it must not take it away.
  const stay = document.getElementById('stay-signed-in');
  if (stay) stay.focus();
  else if (!keepFocus) focusAfterRender();
  else if (focusedId) document.getElementById(focusedId)?.focus();
}

function focusAfterRender() {
  const target = document.getElementById('error-summary')
    || (state.screen === 'result' ? document.getElementById('result-heading') : null)
    || (state.screen === 'check' ? document.getElementById('nhs-number') : null)
    || (state.screen === 'search_result' ? document.getElementById('result-heading') : null)
    || document.getElementById('screen-heading')
    || main;
  target.focus();
  // The caret goes straight to the NHS number; the heading it skips (and any warning above the
  // field) is still spoken.
  if (target.id === 'nhs-number' && state.check?.outcome !== 'invalid_nhs_number') {
    const warning = document.querySelector('#main .cpis-warning .nhsuk-card__heading');
    announce([document.getElementById('screen-heading')?.textContent, warning?.textContent].filter(Boolean).join('. '));
  }
}

function renderChrome() {
  const signedIn = Boolean(state.status?.signed_in_user);
  const enrolled = Boolean(state.status?.enrolled);
  const nav = document.getElementById('nav');
  nav.hidden = !enrolled || state.screen === 'loading';
  // Signed out, the first button leads back to signing in (e.g. from the status screen).
  const first = document.getElementById('nav-check');
  first.dataset.screen = signedIn ? 'check' : 'sign_in';
  first.textContent = signedIn ? 'Check' : 'Sign in';
  document.getElementById('nav-sign-out').hidden = !signedIn;
  document.getElementById('nav-search').hidden = !signedIn;
  for (const b of nav.querySelectorAll('[data-screen]')) {
    const here = b.dataset.screen === state.screen
      || (b.dataset.screen === 'check' && state.screen === 'result' && !state.check?.found)
      || (b.dataset.screen === 'search' && (state.screen === 'search_result' || (state.screen === 'result' && state.check?.found)));
    if (here) b.setAttribute('aria-current', 'page');
    else b.removeAttribute('aria-current');
  }
  const strip = document.getElementById('strip');
  const s = state.status;
  strip.hidden = !enrolled;
  if (!enrolled) return;
  const shown = stripSourceAndAge(s, state.screen === 'result' ? state.check : null);
  strip.replaceChildren(h('div', { class: 'nhsuk-width-container cpis-strip__inner' },
    h('strong', { class: `nhsuk-tag ${s.online ? 'nhsuk-tag--green' : 'nhsuk-tag--grey'}`, id: 'strip-online' }, s.online ? 'Online' : 'Offline'),
    h('span', { id: 'strip-age' }, shown.text),
    shown.stale ? h('strong', { class: 'nhsuk-tag nhsuk-tag--orange' }, 'Out of date') : null,
    signedIn ? h('span', { class: 'cpis-strip__user' }, `Signed in: ${s.signed_in_user.name || s.signed_in_user.id}`) : null));
}

function renderLoading() {
  return h('p', { class: 'nhsuk-body', id: 'loading' }, "Opening this device's copy…");
}

// --- Enrol ------------------------------------------------------------------------------------

// The organisation's settings as the shell reported them at start (null: not managed or unknown),
// and whether the device is enrolling itself with them right now or tried and failed.
let managed = null;
let autoEnrol = null; // null | 'running' | 'failed'

function renderEnrol() {
  const err = state.error;
  const asks = enrolAsks(managed);
  if (autoEnrol === 'running') {
    return [
      heading(MANAGED_ENROLLING_HEADLINE),
      h('p', { class: 'nhsuk-body', id: 'managed-enrolling' },
        'Your organisation has set this device up. It is enrolling with the central service and will then download the region’s records. There is nothing to enter.'),
      summaryList([['Central service', managed.central_url, 'managed-central-url']], 'managed-settings'),
    ];
  }
  const address = asks === 'address_and_code'
    ? field({ id: 'central-url', label: 'Central service address', hint: 'The address your administrator gave you, for example https://cpis.example.org', type: 'url', inputmode: 'url', width: 'nhsuk-input--width-30', value: state.enrolDraft?.url ?? '' })
    : summaryList([['Central service address', h('span', {}, managed.central_url, h('br'), h('span', { class: 'nhsuk-hint' }, 'Set by your organisation')), 'managed-central-url']], 'managed-settings');
  const form = h('form', { id: 'enrol-form', novalidate: true, onsubmit: onEnrol },
    address,
    field({ id: 'enrol-code', label: 'One-time enrolment code', hint: 'It works once and expires', width: 'nhsuk-input--width-20' }),
    button('Enrol this device', { type: 'submit', id: 'enrol-submit' }));
  return [
    err ? errorSummary(enrolErrorWording(err, { automatic: autoEnrol === 'failed' }), 'enrol-code') : null,
    heading('Enrol this device'),
    state.status?.wiped_reason
      ? warningCard('This device’s copy was removed', 'wiped', h('p', { class: 'nhsuk-card__description' }, state.status.wiped_reason))
      : null,
    managed?.problem
      ? warningCard(MANAGED_PROBLEM_TITLE, 'managed-problem',
        h('p', { class: 'nhsuk-card__description' }, managed.problem),
        h('p', { class: 'nhsuk-card__description' }, 'You can still enrol by entering the address and code below. Tell your IT service desk so they can correct the file.'))
      : null,
    h('p', { class: 'nhsuk-body' }, asks === 'code'
      ? 'This is done once, before the device is first used. Your organisation has set the central service; enter the one-time code to link this device to it and download the region’s records.'
      : 'This is done once, by an administrator, before the device is first used. It links the device to the central service and downloads the region’s records.'),
    form,
  ].filter(Boolean);
}

async function onEnrol(e) {
  e.preventDefault();
  const addressSet = enrolAsks(managed) !== 'address_and_code';
  const url = addressSet ? managed.central_url : document.getElementById('central-url').value.trim();
  const code = document.getElementById('enrol-code').value.trim();
  if (!addressSet) setFieldError('central-url', url ? null : 'Enter the central service address');
  setFieldError('enrol-code', code ? null : 'Enter the one-time enrolment code');
  if (!url) return document.getElementById('central-url').focus();
  if (!code) return document.getElementById('enrol-code').focus();
  const submit = document.getElementById('enrol-submit');
  submit.disabled = true;
  submit.textContent = 'Enrolling…';
  try {
    // With the address set by the organisation, the shell sends its own address, not the page's.
    const status = addressSet ? await api.enrolManaged(code) : await api.enrol(url, code);
    autoEnrol = null;
    announce('This device is enrolled');
    dispatch({ type: 'enrolled', status });
  } catch (err) {
    autoEnrol = null;
    if (!addressSet) state = { ...state, enrolDraft: { url } };
    dispatch({ type: 'error', error: err });
  }
}

/** The organisation's file holds a code too: enrol without asking, and say how it went. */
async function enrolByItself() {
  autoEnrol = 'running';
  render();
  announce('Enrolling this device with your organisation’s settings');
  try {
    const status = await api.enrolManaged(null);
    autoEnrol = null;
    managed = { ...managed, enrols_by_itself: false };
    announce(MANAGED_ENROLLED_NOTICE);
    dispatch({ type: 'enrolled', status, notice: MANAGED_ENROLLED_NOTICE });
  } catch (err) {
    // The file's code is spent or refused: the screen asks for a code, with the reason.
    autoEnrol = 'failed';
    managed = { ...managed, enrols_by_itself: false };
    dispatch({ type: 'error', error: err });
  }
}

// --- Sign in ----------------------------------------------------------------------------------

function renderSignIn() {
  const err = state.error;
  const s = state.status || {};
  const where = [s.org_name, settingWording(s.setting)].filter(Boolean).join(', ');
  // Past the lease, or after too many wrong PINs, signing in here cannot open the copy: the numbers
  // to phone come first. Otherwise they follow the form, for anyone who cannot sign in.
  const locked = ['lease_expired', 'locked_out'].includes(err?.code);
  return [
    err ? errorSummary(errorWording(err), err.code === 'wrong_pin' ? 'pin' : 'user-id') : null,
    heading('Sign in'),
    state.notice ? h('div', { class: 'nhsuk-inset-text', id: 'notice' }, h('span', { class: 'nhsuk-u-visually-hidden' }, 'Information: '), h('p', {}, state.notice)) : null,
    where ? h('p', { class: 'nhsuk-body' }, `This device: ${where}`) : null,
    locked ? h('p', { class: 'cpis-strong', id: 'locked-action' }, LOCKED_ACTION) : null,
    locked ? emergencyNumbersSection() : null,
    h('form', { id: 'sign-in-form', novalidate: true, onsubmit: onSignIn },
      field({ id: 'user-id', label: 'User ID', width: 'nhsuk-input--width-20', value: state.lastUserId ?? '', extra: { autocomplete: 'username' } }),
      field({ id: 'pin', label: 'PIN', type: 'password', inputmode: 'numeric', width: 'nhsuk-input--width-10', extra: { autocomplete: 'current-password' } }),
      button('Sign in', { type: 'submit', id: 'sign-in-submit' })),
    locked ? null : emergencyNumbersSection(),
  ].filter(Boolean);
}

async function onSignIn(e) {
  e.preventDefault();
  const userInput = document.getElementById('user-id');
  const pinInput = document.getElementById('pin');
  const userId = userInput.value.trim();
  const pin = pinInput.value;
  // The PIN leaves the field at once: it is never kept by the page.
  pinInput.value = '';
  setFieldError('user-id', userId ? null : 'Enter your user ID');
  setFieldError('pin', pin ? null : 'Enter your PIN');
  if (!userId) return userInput.focus();
  if (!pin) return pinInput.focus();
  const submit = document.getElementById('sign-in-submit');
  submit.disabled = true;
  submit.textContent = 'Signing in…';
  state = { ...state, lastUserId: userId };
  try {
    const status = await api.signIn(userId, pin);
    announce(`Signed in as ${status.signed_in_user?.name ?? userId}`);
    dispatch({ type: 'signed_in', status });
    idle.start();
  } catch (err) {
    dispatch({ type: 'error', error: err });
  }
}

// --- Check ------------------------------------------------------------------------------------

function renderCheck() {
  const s = state.status || {};
  const invalidFromEngine = state.check?.outcome === 'invalid_nhs_number' ? state.check : null;
  const form = h('form', { id: 'check-form', novalidate: true, onsubmit: onCheck },
    field({ id: 'nhs-number', label: 'NHS number', hint: '10 digits. Spaces are added for you.', inputmode: 'numeric', width: 'nhsuk-input--width-10 cpis-nhs-input', extra: { maxlength: '16' } }),
    h('div', { class: 'nhsuk-form-group' },
      h('div', { class: 'nhsuk-checkboxes', 'data-module': 'nhsuk-checkboxes' },
        h('div', { class: 'nhsuk-checkboxes__item' },
          h('input', { class: 'nhsuk-checkboxes__input', id: 'pregnant', name: 'pregnant', type: 'checkbox', 'aria-describedby': 'pregnant-hint' }),
          h('label', { class: 'nhsuk-label nhsuk-checkboxes__label', for: 'pregnant' }, 'Pregnant woman — check for an unborn child plan on her own number'),
          h('div', { class: 'nhsuk-hint nhsuk-checkboxes__hint', id: 'pregnant-hint' }, 'Unborn child protection plans are held against the mother’s NHS number: nothing is held about the baby.')))),
    field({ id: 'case-ref', label: 'Incident or case reference (optional)', hint: 'For example the incident or case number, kept with this check', width: 'nhsuk-input--width-20', required: false }),
    button('Check', { type: 'submit', id: 'check-submit' }));
  const stale = staleWarning(s.stale, s.data_age_seconds);
  const out = [
    heading('Check an NHS number'),
    stale ? warningCard('This device’s copy is out of date', 'stale-warning', h('p', { class: 'nhsuk-card__description' }, stale)) : null,
    form,
    h('p', { class: 'nhsuk-body' }, 'No NHS number? ',
      h('a', { href: '#', id: 'to-search', onclick: (e) => { e.preventDefault(); dispatch({ type: 'navigate', screen: 'search' }); } }, 'Search by name and date of birth')),
  ];
  queueMicrotask(() => {
    const input = document.getElementById('nhs-number');
    if (!input) return;
    input.addEventListener('input', onNhsInput);
    if (invalidFromEngine) {
      input.value = invalidFromEngine.nhs_number ?? state.lastNhsInput ?? '';
      setFieldError('nhs-number', invalidFromEngine.reason || INVALID_HEADLINE);
    }
  });
  return out.filter(Boolean);
}

function onNhsInput(e) {
  const input = e.target;
  const atEnd = input.selectionStart === input.value.length;
  const digits = nhsDigits(input.value);
  // Regroup as 3-3-4 while typing at the end; mid-field edits are left alone so the caret stays put.
  if (atEnd && /^\d{0,10}$/.test(digits)) {
    const formatted = formatNhs(digits);
    if (formatted !== input.value) input.value = formatted;
  }
  showNhsFeedback(input.value, false);
}

function showNhsFeedback(value, submitted) {
  const { error, hint } = nhsFieldMessage(value, { submitted });
  setFieldError('nhs-number', error);
  const feedback = document.getElementById('nhs-number-feedback');
  if (!error && hint && feedback) {
    feedback.append(h('span', { class: 'cpis-field-status', id: 'nhs-number-status' }, hint));
  }
  return error;
}

async function onCheck(e) {
  e.preventDefault();
  const input = document.getElementById('nhs-number');
  const error = showNhsFeedback(input.value, true);
  if (error) {
    input.focus();
    return;
  }
  const v = validateNhs(input.value);
  const pregnant = document.getElementById('pregnant').checked;
  const caseRef = document.getElementById('case-ref').value.trim();
  const submit = document.getElementById('check-submit');
  submit.disabled = true;
  submit.textContent = 'Checking…';
  state = { ...state, lastNhsInput: v.formatted };
  idle.touch();
  const view = await api.checkPatient(v.digits, pregnant, caseRef).catch((err) => ({ error: err }));
  if (view.error) {
    dispatch({ type: 'error', error: view.error });
    submit.disabled = false;
    submit.textContent = 'Check';
    return;
  }
  announce(resultAnnouncement(view));
  dispatch({ type: 'checked', view });
  refreshStatus();
}

function resultAnnouncement(view) {
  switch (view.outcome) {
    case 'record_found': return view.opened ? 'Alert opened' : FOUND_HEADLINE;
    case 'no_record': return MISS_HEADLINE;
    case 'locked': return LOCKED_HEADLINE;
    default: return view.reason || INVALID_HEADLINE;
  }
}

// --- Result -----------------------------------------------------------------------------------

function dataAgeLine(view) {
  return h('p', { class: 'nhsuk-body cpis-data-age', id: 'data-age' },
    dataAgeWording(view.source, view.data_age_seconds),
    view.data_as_of ? ` (${formatDateTime(view.data_as_of)})` : '');
}

function staleBlock(view) {
  const text = staleWarning(view.stale, view.data_age_seconds);
  return text ? warningCard('Out-of-date data', 'stale-warning', h('p', { class: 'nhsuk-card__description' }, text)) : null;
}

function againButton() {
  if (state.check?.found) return searchAgainButton();
  return button('Check another NHS number', { id: 'check-again', onclick: () => dispatch({ type: 'navigate', screen: 'check' }) }, 'nhsuk-button--secondary');
}

function searchAgainButton() {
  return button('Search again', { id: 'search-again', onclick: () => dispatch({ type: 'navigate', screen: 'search' }) }, 'nhsuk-button--secondary');
}

function renderResult() {
  const view = state.check;
  if (!view) return renderCheck();
  const nhs = view.nhs_number ? `NHS number ${view.nhs_number}` : null;
  const err = state.error ? errorSummary(errorWording(state.error), null) : null;
  if (view.outcome === 'locked') {
    return [err,
      emergencyCard(LOCKED_HEADLINE, 'locked-card',
        view.reason ? h('p', { id: 'locked-reason' }, view.reason) : null,
        h('p', { class: 'cpis-strong', id: 'locked-action' }, LOCKED_ACTION)),
      emergencyNumbersSection(),
      dataAgeLine(view), againButton()].filter(Boolean);
  }
  if (view.outcome === 'no_record') {
    return [err,
      h('div', { id: 'result', class: 'cpis-result cpis-result--miss' },
        heading(MISS_HEADLINE, { id: 'result-heading', caption: nhs }),
        staleBlock(view),
        h('p', { class: 'nhsuk-body' }, 'This check could not see:'),
        h('ul', { class: 'nhsuk-list nhsuk-list--bullet', id: 'caveats' }, caveatsFor(view).map((c) => h('li', {}, c))),
        h('div', { class: 'nhsuk-inset-text' }, h('span', { class: 'nhsuk-u-visually-hidden' }, 'Information: '), h('p', {}, REFERRAL_REMINDER)),
        dataAgeLine(view)),
      againButton()].filter(Boolean);
  }
  if (view.outcome === 'invalid_nhs_number') {
    return [heading(INVALID_HEADLINE, { id: 'result-heading' }), h('p', { class: 'nhsuk-body' }, view.reason || ''), againButton()];
  }
  return view.opened ? renderOpened(view, nhs, err) : renderFound(view, nhs, err);
}

function renderFound(view, nhs, err) {
  const wording = openAlertWording(view.notifies, view.local_authorities?.length || 1);
  return [err,
    h('div', { id: 'result', class: 'cpis-result cpis-result--found' },
      h('span', { class: 'nhsuk-caption-l' }, nhs),
      h('div', { class: 'nhsuk-card nhsuk-card--warning cpis-found', id: 'found-callout' },
        h('div', { class: 'nhsuk-card__content' },
          h('h1', { class: 'nhsuk-card__heading cpis-heading', id: 'result-heading', tabindex: '-1' },
            h('span', { role: 'text' }, h('span', { class: 'nhsuk-u-visually-hidden' }, 'Important: '), FOUND_HEADLINE)),
          h('p', { class: 'nhsuk-card__description' }, view.message && view.message !== FOUND_HEADLINE ? view.message : 'Open the alert to see the plans and the local authority’s emergency duty number.'))),
      staleBlock(view),
      view.found ? foundBySearchBlock(view.found) : null,
      button(wording.text, { id: 'open-alert', 'aria-describedby': 'open-alert-hint', 'data-check-id': view.check_id, onclick: onOpenAlert }, 'cpis-open-alert'),
      h('p', { class: `nhsuk-hint ${view.notifies ? 'cpis-notifies' : ''}`, id: 'open-alert-hint' }, wording.hint),
      laBlock(view.local_authority, false),
      dataAgeLine(view)),
    againButton()].filter(Boolean);
}

async function onOpenAlert(e) {
  const btn = e.currentTarget;
  btn.disabled = true;
  btn.textContent = 'Opening…';
  idle.touch();
  try {
    const view = await api.openAlert(state.check.check_id);
    announce('Alert opened');
    dispatch({ type: 'opened', view });
    refreshStatus();
  } catch (err) {
    dispatch({ type: 'error', error: err });
  }
}

function laBlock(la, full, index = 0) {
  if (!la) return null;
  // The first LA keeps the plain ids; a second (a child who moved) gets numbered ones.
  const id = (base) => (index === 0 ? base : `${base}-${index + 1}`);
  return h('section', { id: id('local-authority'), class: 'cpis-la', 'aria-labelledby': id('la-heading') },
    h('h2', { id: id('la-heading'), class: 'nhsuk-heading-m' }, full ? `Local authority: ${la.name}` : 'Responsible local authority'),
    h('p', { class: 'nhsuk-body' }, `${la.name} (${la.ods})`),
    h('a', { class: 'nhsuk-button cpis-call', href: telHref(la.emergency_phone), id: id('call-emergency') },
      `Call the emergency duty team: ${la.emergency_phone}`),
    full && la.office_phone
      ? h('p', { class: 'nhsuk-body' }, 'Office hours: ', h('a', { href: telHref(la.office_phone), id: id('call-office'), class: 'cpis-tel' }, la.office_phone))
      : null);
}

function renderOpened(view, nhs, err) {
  const p = view.person;
  const name = p ? `${p.given_names} ${p.family_name}` : 'this person';
  const laName = (plan) => plan.local_authority ? plan.local_authority.name : plan.local_authority_ods;
  const plansTable = table('Plans',
    ['Plan', 'Local authority', 'Start', 'End', 'Status'],
    view.plans.map((plan) => [
      planKindWording(plan), laName(plan), formatDate(plan.start), planEndWording(plan),
      plan.status === 'current' ? h('strong', { class: 'nhsuk-tag nhsuk-tag--red' }, 'Current') : planStatusWording(plan),
    ]), 'plans');
  const las = view.local_authorities?.length ? view.local_authorities : [view.local_authority].filter(Boolean);
  const historyHeading = `Accesses to ${name}'s record from unscheduled care`;
  let history;
  if (view.access_history.length) {
    history = table('Most recent accesses from unscheduled care, each user counted at their first access in any 24 hours (up to 25)', ['When', 'Organisation', 'Role', 'Setting'],
      view.access_history.map((a) => [formatDateTime(a.at), `${a.org_name} (${a.org_ods})`, a.role, settingWording(a.setting)]), 'access-history');
  } else if (view.source === 'cache') {
    history = h('p', { class: 'nhsuk-body', id: 'access-history' }, 'Access history is held by the central service and cannot be shown offline.');
  } else {
    history = h('p', { class: 'nhsuk-body', id: 'access-history' }, 'No accesses from unscheduled care are recorded for this person.');
  }
  const caveats = view.caveats?.length
    ? h('div', { class: 'nhsuk-inset-text', id: 'alert-caveats-block' },
      h('span', { class: 'nhsuk-u-visually-hidden' }, 'Information: '),
      h('h2', { class: 'nhsuk-heading-s' }, 'Before you rely on this'),
      h('ul', { class: 'nhsuk-list nhsuk-list--bullet', id: 'alert-caveats' }, view.caveats.map((c) => h('li', {}, c))))
    : null;
  const notifyText = notificationWording(view.notification);
  return [err,
    h('div', { id: 'result', class: 'cpis-result cpis-result--opened' },
      h('span', { class: 'nhsuk-caption-l' }, nhs),
      h('div', { class: 'nhsuk-card nhsuk-card--warning cpis-found', id: 'found-callout' },
        h('div', { class: 'nhsuk-card__content' },
          h('h1', { class: 'nhsuk-card__heading cpis-heading', id: 'result-heading', tabindex: '-1' },
            h('span', { role: 'text' }, h('span', { class: 'nhsuk-u-visually-hidden' }, 'Important: '), `CP-IS record: ${name}`)),
          h('p', { class: 'nhsuk-card__description' }, view.plans.map(planKindWording).join(', ') || FOUND_HEADLINE))),
      staleBlock(view),
      p ? summaryList([
        ['Name', name, 'person-name'],
        ['Date of birth', formatDate(p.date_of_birth), 'person-dob'],
        ['NHS number', view.nhs_number ?? '', 'person-nhs'],
        p.local_id ? ['Local authority case ID', p.local_id, 'person-local-id'] : null,
      ], 'person') : null,
      plansTable,
      caveats,
      ...las.map((la, i) => laBlock(la, true, i)),
      h('h2', { class: 'nhsuk-heading-m' }, las.length > 1 ? 'Local authority notifications' : 'Local authority notification'),
      h('p', { class: `nhsuk-body cpis-notification cpis-notification--${view.notification ?? 'none'}`, id: 'notification' }, notifyText),
      h('h2', { class: 'nhsuk-heading-m', id: 'access-history-heading' }, historyHeading),
      history,
      dataAgeLine(view)),
    againButton()].filter(Boolean);
}

// --- Search by name and date of birth ---------------------------------------------------------

let searchDraft = {};

function dateInput(draft) {
  const part = (id, label, width, value) => h('div', { class: 'nhsuk-date-input__item' },
    h('div', { class: 'nhsuk-form-group' },
      h('label', { class: 'nhsuk-label nhsuk-date-input__label', for: id }, label),
      h('input', { class: `nhsuk-input nhsuk-date-input__input ${width}`, id, name: id, type: 'text', inputmode: 'numeric', autocomplete: 'off', value: value ?? '' })));
  return h('div', { class: 'nhsuk-form-group', id: 'dob-group' },
    h('fieldset', { class: 'nhsuk-fieldset', role: 'group', 'aria-describedby': 'dob-hint dob-feedback' },
      h('legend', { class: 'nhsuk-fieldset__legend nhsuk-fieldset__legend--s' }, 'Date of birth'),
      h('div', { class: 'nhsuk-hint', id: 'dob-hint' }, 'For example, 7 3 2019. A date with day and month swapped is found too.'),
      h('div', { id: 'dob-feedback', 'aria-live': 'polite', class: 'cpis-feedback' }),
      h('div', { class: 'nhsuk-date-input', id: 'dob' },
        part('dob-day', 'Day', 'nhsuk-input--width-2', draft.day),
        part('dob-month', 'Month', 'nhsuk-input--width-2', draft.month),
        part('dob-year', 'Year', 'nhsuk-input--width-4', draft.year))));
}

function setDobError(message) {
  const group = document.getElementById('dob-group');
  const feedback = document.getElementById('dob-feedback');
  if (!group || !feedback) return;
  feedback.replaceChildren();
  group.classList.toggle('nhsuk-form-group--error', Boolean(message));
  for (const id of ['dob-day', 'dob-month', 'dob-year']) {
    const input = document.getElementById(id);
    input.classList.toggle('nhsuk-input--error', Boolean(message));
    if (message) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }
  if (message) {
    feedback.append(h('span', { class: 'nhsuk-error-message', id: 'dob-error' }, h('span', { class: 'nhsuk-u-visually-hidden' }, 'Error: '), message));
  }
}

function sexRadios(value) {
  const item = (v, label) => h('div', { class: 'nhsuk-radios__item' },
    h('input', { class: 'nhsuk-radios__input', id: `sex-${v}`, name: 'sex', type: 'radio', value: v, checked: value === v }),
    h('label', { class: 'nhsuk-label nhsuk-radios__label', for: `sex-${v}` }, label));
  return h('div', { class: 'nhsuk-form-group', id: 'sex-group' },
    h('fieldset', { class: 'nhsuk-fieldset', 'aria-describedby': 'sex-hint' },
      h('legend', { class: 'nhsuk-fieldset__legend nhsuk-fieldset__legend--s' }, 'Sex (optional)'),
      h('div', { class: 'nhsuk-hint', id: 'sex-hint' }, 'Kept with the search. CP-IS does not hold it, so it does not narrow the search.'),
      h('div', { class: 'nhsuk-radios nhsuk-radios--inline', 'data-module': 'nhsuk-radios' },
        item('female', 'Female'), item('male', 'Male'), item('unknown', 'Not known'))));
}

function renderSearch() {
  const d = searchDraft;
  const err = state.error;
  const tooMany = state.search?.outcome === 'too_many' ? state.search : null;
  const form = h('form', { id: 'search-form', novalidate: true, onsubmit: onSearch },
    field({ id: 'family-name', label: 'Family name', hint: 'Accents, hyphens, apostrophes and spellings that sound alike are matched too', width: 'nhsuk-input--width-20', value: d.familyName ?? '' }),
    field({ id: 'given-name', label: 'Given name (optional, but needed for a single match)', width: 'nhsuk-input--width-20', value: d.givenName ?? '', required: false }),
    dateInput(d),
    sexRadios(d.sex),
    field({ id: 'postcode', label: 'Postcode district (optional)', hint: 'The first half of the postcode, for example LS6. Kept with the search; CP-IS does not hold it.', width: 'nhsuk-input--width-5', value: d.postcode ?? '', required: false }),
    field({ id: 'search-case-ref', label: 'Incident or case reference (optional)', width: 'nhsuk-input--width-20', value: d.caseRef ?? '', required: false }),
    button('Search', { type: 'submit', id: 'search-submit' }));
  return [
    err ? errorSummary(errorWording(err), searchErrorField(err.message)) : null,
    heading(SEARCH_HEADLINE),
    tooMany
      ? warningCard(SEARCH_TOO_MANY_HEADLINE, 'too-many',
        h('p', { class: 'nhsuk-card__description' }, tooMany.caveats?.[0] ?? 'Add the given name, check the spelling and the date of birth, or check by NHS number when you have it.'),
        h('p', { class: 'nhsuk-card__description' }, 'Nobody is shown until fewer people match.'))
      : h('p', { class: 'nhsuk-body' }, 'When you do not have the NHS number. A single answer is given only when exactly one person matches the family name, given name and date of birth; otherwise you confirm from possible matches.'),
    form,
    h('p', { class: 'nhsuk-body' },
      h('a', { href: '#', id: 'to-check', onclick: (e) => { e.preventDefault(); dispatch({ type: 'navigate', screen: 'check' }); } }, 'Check by NHS number instead')),
  ].filter(Boolean);
}

async function onSearch(e) {
  e.preventDefault();
  const value = (id) => document.getElementById(id)?.value.trim() ?? '';
  searchDraft = {
    familyName: value('family-name'), givenName: value('given-name'),
    day: value('dob-day'), month: value('dob-month'), year: value('dob-year'),
    sex: document.querySelector('input[name="sex"]:checked')?.value ?? null,
    postcode: value('postcode'), caseRef: value('search-case-ref'),
  };
  const d = searchDraft;
  const dob = composeDob(d.day, d.month, d.year);
  setFieldError('family-name', d.familyName ? null : 'Enter the family name');
  setDobError(dob.error ?? null);
  if (!d.familyName) return document.getElementById('family-name').focus();
  if (dob.error) return document.getElementById('dob-day').focus();
  const submit = document.getElementById('search-submit');
  submit.disabled = true;
  submit.textContent = 'Searching…';
  idle.touch();
  try {
    const view = await api.searchPatient({
      familyName: d.familyName, dateOfBirth: dob.value, givenName: d.givenName, sex: d.sex,
      postcodeDistrict: d.postcode, caseReference: d.caseRef,
    });
    announce(searchAnnouncement(view));
    dispatch({ type: 'searched', view });
    refreshStatus();
  } catch (err) {
    dispatch({ type: 'error', error: err });
  }
}

function searchAnnouncement(view) {
  switch (view.outcome) {
    case 'match': return FOUND_HEADLINE;
    case 'possible_matches': return `${view.candidates.length} possible ${view.candidates.length === 1 ? 'match' : 'matches'}`;
    case 'too_many': return SEARCH_TOO_MANY_HEADLINE;
    case 'locked': return LOCKED_HEADLINE;
    default: return SEARCH_MISS_HEADLINE;
  }
}

function matchList(title, items, id, level = 3) {
  if (!items?.length) return null;
  return h('div', {},
    h(`h${level}`, { class: 'nhsuk-heading-xs cpis-match-title' }, title),
    h('ul', { class: 'nhsuk-list nhsuk-list--bullet', id }, items.map((t) => h('li', {}, t))));
}

/** Who the search found and how they compare, shown before the alert is opened. */
function foundBySearchBlock(found) {
  const m = found.matched;
  return h('div', { class: 'nhsuk-inset-text', id: 'found-by-search' },
    h('span', { class: 'nhsuk-u-visually-hidden' }, 'Information: '),
    h('p', {}, SEARCH_FOUND_NOTE),
    m ? summaryList([
      ['Name', `${m.given_names} ${m.family_name}`, 'found-name'],
      ['Date of birth', formatDate(m.date_of_birth), 'found-dob'],
    ], 'found-person') : null,
    m ? matchList('What matched', m.matched, 'found-matched', 2) : null,
    m ? matchList('What differed', m.differed, 'found-differed', 2) : null);
}

function renderSearchResult() {
  const v = state.search;
  if (!v) return renderSearch();
  const err = state.error ? errorSummary(errorWording(state.error), null) : null;
  if (v.outcome === 'locked') {
    return [err,
      emergencyCard(LOCKED_HEADLINE, 'locked-card',
        v.reason ? h('p', { id: 'locked-reason' }, v.reason) : null,
        h('p', { class: 'cpis-strong', id: 'locked-action' }, LOCKED_ACTION)),
      emergencyNumbersSection(),
      dataAgeLine(v), searchAgainButton()].filter(Boolean);
  }
  if (v.outcome === 'possible_matches') {
    return [err,
      h('div', { id: 'result', class: 'cpis-result cpis-result--possible' },
        heading(SEARCH_POSSIBLE_HEADLINE, { id: 'result-heading' }),
        h('p', { class: 'nhsuk-body', id: 'possible-hint' }, SEARCH_CONFIRM_HINT),
        h('ul', { class: 'nhsuk-list cpis-cards', id: 'candidates' }, v.candidates.map((c) => h('li', {},
          h('div', { class: 'nhsuk-card', id: `candidate-${c.candidate}` },
            h('div', { class: 'nhsuk-card__content' },
              h('h2', { class: 'nhsuk-card__heading nhsuk-heading-m' }, `${c.given_names} ${c.family_name}`),
              h('p', { class: 'nhsuk-card__description' }, `Born ${formatDate(c.date_of_birth)}`),
              matchList('What matched', c.matched, `candidate-${c.candidate}-matched`),
              matchList('What differed', c.differed, `candidate-${c.candidate}-differed`),
              button('This is my patient', {
                id: `choose-${c.candidate}`, 'aria-label': `This is my patient: ${c.given_names} ${c.family_name}, born ${formatDate(c.date_of_birth)}`,
                onclick: (e) => onChoose(e, c),
              })))))),
        button('None of these', { id: 'none-of-these', onclick: onNoneOfThese }, 'nhsuk-button--secondary'),
        dataAgeLine(v)),
      searchAgainButton()].filter(Boolean);
  }
  return [err,
    h('div', { id: 'result', class: 'cpis-result cpis-result--miss' },
      heading(SEARCH_MISS_HEADLINE, { id: 'result-heading' }),
      staleBlock(v),
      h('p', { class: 'nhsuk-body' }, 'This search could not see:'),
      h('ul', { class: 'nhsuk-list nhsuk-list--bullet', id: 'caveats' }, (v.caveats?.length ? v.caveats : SEARCH_CAVEATS).map((c) => h('li', {}, c))),
      h('div', { class: 'nhsuk-inset-text' }, h('span', { class: 'nhsuk-u-visually-hidden' }, 'Information: '), h('p', {}, REFERRAL_REMINDER)),
      dataAgeLine(v)),
    searchAgainButton()].filter(Boolean);
}

async function onChoose(e, card) {
  e.currentTarget.disabled = true;
  idle.touch();
  try {
    const view = await api.chooseCandidate(state.search.search_id, card.candidate);
    announce(FOUND_HEADLINE);
    dispatch({ type: 'chosen', view, card });
  } catch (err) {
    dispatch({ type: 'error', error: err });
  }
}

async function onNoneOfThese(e) {
  e.currentTarget.disabled = true;
  idle.touch();
  try {
    const view = await api.noneOfThese(state.search.search_id);
    announce(SEARCH_MISS_HEADLINE);
    dispatch({ type: 'searched', view });
  } catch (err) {
    dispatch({ type: 'error', error: err });
  }
}

// --- Sync and status --------------------------------------------------------------------------

function renderStatus() {
  const s = state.status || {};
  const user = s.signed_in_user;
  const queued = `${s.queued_events ?? 0}${s.queued_events && s.oldest_queued_age_seconds !== null && s.oldest_queued_age_seconds !== undefined ? ` (oldest ${humanDuration(s.oldest_queued_age_seconds)} old)` : ''}`;
  const dead = s.dead_letters || [];
  const err = state.error ? errorSummary(errorWording(state.error), null) : null;
  return [err,
    heading('Sync and status'),
    s.wiped_reason ? warningCard('This device’s copy was removed', 'wiped', h('p', { class: 'nhsuk-card__description' }, s.wiped_reason)) : null,
    s.stale ? warningCard('This device’s copy is out of date', 'stale-warning', h('p', { class: 'nhsuk-card__description' }, staleWarning(true, s.data_age_seconds))) : null,
    summaryList([
      ['Connection', s.online ? 'Online' : 'Offline', 'st-online'],
      ['Last sync', s.last_sync_at ? `${formatDateTime(s.last_sync_at)} (${agoWording(s.data_age_seconds)})` : 'Never', 'st-last-sync'],
      ['Data age', dataAgeWording('cache', s.data_age_seconds), 'st-age'],
      ['Records held', Number(s.cached_flags ?? 0).toLocaleString('en-GB'), 'st-records'],
      ['Access records waiting to send', queued, 'st-queued'],
      ['Could not be delivered', dead.length ? `${dead.length}: ask your administrator` : 'None', 'st-dead'],
      ['Offline access ends', s.lease_expires_at ? formatDateTime(s.lease_expires_at) : 'Not signed in online yet', 'st-lease'],
      ['Signed in', user ? `${user.name} (${user.id}), ${user.notifies ? 'opening an alert tells the local authority' : 'reads silently'}` : 'No one', 'st-user'],
      ['Organisation and setting', [s.org_name, settingWording(s.setting)].filter(Boolean).join(', '), 'st-org'],
      ['Region', s.region ?? '', 'st-region'],
      ['Central service', s.central_url ?? '', 'st-central'],
      ['Device ID', s.device_id ?? '', 'st-device'],
    ], 'status-list'),
    dead.length ? table('Access records that could not be delivered', ['Recorded', 'Reason'], dead.map((d) => [formatDateTime(d.created_at), d.reason]), 'dead-letters') : null,
    h('div', { class: 'cpis-sync' },
      h('p', { class: 'nhsuk-label nhsuk-label--s', id: 'sync-label' }, 'Sync progress'),
      h('div', { class: 'cpis-progress', id: 'sync-progress', role: 'progressbar', 'aria-labelledby': 'sync-label', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': '0', 'aria-describedby': 'sync-text' },
        h('div', { class: 'cpis-progress__bar', id: 'sync-bar' })),
      // Progress is spoken through the page's announcer at milestones, not on every page downloaded.
      h('p', { class: 'nhsuk-body', id: 'sync-text' }, state.progress ? syncProgressWording(state.progress) : 'Not started'),
      // aria-disabled, not disabled: a disabled button drops keyboard focus to the page body.
      button(state.syncing ? 'Syncing…' : 'Sync now', { id: 'sync-now', onclick: onSyncNow, 'aria-disabled': state.syncing ? 'true' : null })),
    appearanceSwitch(),
  ].filter(Boolean);
}

// --- Appearance -------------------------------------------------------------------------------

function storedAppearance() {
  try {
    return appearanceChoice(window.localStorage.getItem(APPEARANCE_KEY));
  } catch {
    return 'device';
  }
}

/** Light, dark, or (no attribute) whatever the device is set to; the colours themselves are in app.css. */
function applyAppearance(choice) {
  if (choice === 'device') delete document.documentElement.dataset.appearance;
  else document.documentElement.dataset.appearance = choice;
}

function onAppearanceChange(e) {
  const choice = appearanceChoice(e.target.value);
  applyAppearance(choice);
  try {
    window.localStorage.setItem(APPEARANCE_KEY, choice);
  } catch {
    // Not remembered without storage; the choice still holds until the app closes.
  }
}

function appearanceSwitch() {
  const current = storedAppearance();
  return h('div', { class: 'nhsuk-form-group cpis-appearance' },
    h('fieldset', { class: 'nhsuk-fieldset', 'aria-describedby': 'appearance-hint' },
      h('legend', { class: 'nhsuk-fieldset__legend nhsuk-fieldset__legend--m' },
        h('h2', { class: 'nhsuk-fieldset__heading' }, 'Appearance')),
      h('div', { class: 'nhsuk-hint', id: 'appearance-hint' }, 'Dark is easier on the eyes at night. This device remembers the choice.'),
      h('div', { class: 'nhsuk-radios nhsuk-radios--inline', 'data-module': 'nhsuk-radios' },
        APPEARANCES.map(({ value, label }) => h('div', { class: 'nhsuk-radios__item' },
          h('input', { class: 'nhsuk-radios__input', id: `appearance-${value}`, name: 'appearance', type: 'radio', value, checked: value === current, onchange: onAppearanceChange }),
          h('label', { class: 'nhsuk-label nhsuk-radios__label', for: `appearance-${value}` }, label))))));
}

function updateProgress() {
  const bar = document.getElementById('sync-bar');
  const box = document.getElementById('sync-progress');
  const text = document.getElementById('sync-text');
  if (!bar || !box || !text) return;
  const pct = Math.round(syncFraction(state.progress) * 100);
  // CSSOM writes are allowed by the style-src 'self' policy; inline style attributes are not.
  bar.style.width = `${pct}%`;
  box.setAttribute('aria-valuenow', String(pct));
  text.textContent = syncProgressWording(state.progress);
  const btn = document.getElementById('sync-now');
  if (btn) {
    if (state.syncing) btn.setAttribute('aria-disabled', 'true');
    else btn.removeAttribute('aria-disabled');
    btn.textContent = state.syncing ? 'Syncing…' : 'Sync now';
  }
}

async function onSyncNow() {
  if (state.syncing) return;
  state = transition(state, { type: 'sync_started' });
  updateProgress();
  announce('Sync started');
  try {
    const summary = await api.syncNow();
    state = transition(state, { type: 'sync_done', summary });
    await refreshStatus(true);
    updateProgress();
    const text = document.getElementById('sync-text');
    if (text) text.textContent = syncSummaryWording(summary);
    announce(syncSummaryWording(summary));
  } catch (err) {
    dispatch({ type: 'sync_failed', error: err });
  }
}

/** Refreshes the status; redraws the status screen (keeping the bar) or just the strip elsewhere. */
async function refreshStatus(redrawStatusScreen = false) {
  try {
    const status = await api.appStatus();
    const before = state.screen;
    state = transition(state, { type: 'status', status });
    if (state.screen !== before) {
      render();
    } else if (redrawStatusScreen && state.screen === 'status') {
      render({ keepFocus: true });
      updateProgress();
    } else {
      renderChrome();
    }
  } catch {
    // The strip keeps its last known state; the next refresh tries again.
  }
}

// ---------------------------------------------------------------------------------------------
// Idle lock and start-up
// ---------------------------------------------------------------------------------------------

const idleTimeoutMs = Number(window.__CPIS_CONFIG__?.idleTimeoutMs) || DEFAULT_IDLE_TIMEOUT_MS;
// The warning comes a minute before, or halfway when the limit is shorter than two minutes.
const idleWarnMs = Math.min(IDLE_WARNING_MS, Math.floor(idleTimeoutMs / 2));
let lastKeepAlive = 0;

/** Tells the engine the clinician is still there (it keeps its own idle limit), at most every 30 s. */
function keepEngineAlive(force = false) {
  if (!state.status?.signed_in_user) return;
  const now = Date.now();
  if (!force && now - lastKeepAlive < 30000) return;
  lastKeepAlive = now;
  api.keepAlive().catch(() => {});
}

function hideIdleWarning() {
  const box = document.getElementById('idle-warning');
  if (!box) return;
  box.remove();
  announce('You are still signed in');
}

function showIdleWarning() {
  if (document.getElementById('idle-warning')) return;
  const seconds = Math.round(idleWarnMs / 1000);
  const stay = h('button', { class: 'nhsuk-button', id: 'stay-signed-in', type: 'button',
    onclick: () => { idle.touch(); keepEngineAlive(true); } }, 'Stay signed in');
  const box = h('div', { id: 'idle-warning', class: 'cpis-idle-warning', role: 'alertdialog', 'aria-modal': 'true',
    'aria-labelledby': 'idle-warning-heading', 'aria-describedby': 'idle-warning-text' },
  h('div', { class: 'nhsuk-card nhsuk-card--warning cpis-idle-warning__card' },
    h('div', { class: 'nhsuk-card__content' },
      h('h2', { class: 'nhsuk-card__heading', id: 'idle-warning-heading' }, `You will be signed out in ${seconds < 60 ? `${seconds} seconds` : '1 minute'}`),
      h('p', { class: 'nhsuk-card__description', id: 'idle-warning-text' },
        'This app has not been used for a while. When you are signed out, this screen and any result on it are cleared.'),
      stay)));
  document.body.append(box);
  stay.focus();
}

const idle = createIdleTimer(idleTimeoutMs, async () => {
  document.getElementById('idle-warning')?.remove();
  await api.signOut().catch(() => {});
  searchDraft = {};
  announce('Signed out because the app was not used for a while');
  dispatch({ type: 'idle_lock' });
}, undefined, { warnMs: idleWarnMs, onWarn: showIdleWarning, onActive: hideIdleWarning });
for (const type of ['pointerdown', 'keydown', 'input', 'wheel', 'touchstart']) {
  document.addEventListener(type, () => { idle.touch(); keepEngineAlive(); }, { passive: true, capture: true });
}

async function signOut() {
  idle.stop();
  document.getElementById('idle-warning')?.remove();
  searchDraft = {};
  await api.signOut().catch(() => {});
  announce('Signed out');
  dispatch({ type: 'signed_out' });
}

function wireChrome() {
  document.getElementById('nav-check').addEventListener('click', (e) => dispatch({ type: 'navigate', screen: e.currentTarget.dataset.screen }));
  document.getElementById('nav-search').addEventListener('click', () => dispatch({ type: 'navigate', screen: 'search' }));
  document.getElementById('nav-status').addEventListener('click', async () => {
    dispatch({ type: 'navigate', screen: 'status' });
    updateProgress();
    await refreshStatus(true);
  });
  document.getElementById('nav-sign-out').addEventListener('click', signOut);
}

async function start() {
  wireChrome();
  try {
    await onSyncProgress((progress) => {
      // Only a sync the clinician asked for is spoken; background rounds stay quiet.
      const said = state.syncing ? syncAnnouncement(state.progress, progress) : null;
      state = transition(state, { type: 'sync_progress', progress });
      updateProgress();
      if (said) announce(said);
      if (progress.phase === 'done') refreshStatus(state.screen === 'status');
    });
  } catch {
    // Without events the bar still completes when "Sync now" returns.
  }
  try {
    const status = await api.appStatus();
    if (!status.enrolled) {
      // A shell without managed settings (or a failure to ask) leaves the normal enrol screen.
      managed = await api.managedEnrolment().catch(() => null);
    }
    dispatch({ type: 'status', status });
    if (status.signed_in_user) idle.start();
    if (!status.enrolled && enrolAsks(managed) === 'nothing') await enrolByItself();
  } catch (err) {
    dispatch({ type: 'error', error: err });
  }
  // Keeps the online/offline tag and data age current while the app sits open.
  setInterval(() => { if (state.status?.enrolled) refreshStatus(); }, 30000);
}

start();
