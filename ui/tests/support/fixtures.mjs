// Canned engine views for the mocked browser tests, shaped exactly like cpis-device's serde output.
// NHS numbers are from the 999 test range; names and places are synthetic.

export const PIN = '2468';
export const CHECK_IDS = {
  miss: '0192f0a0-0000-7000-8000-000000000001',
  found: '0192f0a0-0000-7000-8000-000000000002',
  silent: '0192f0a0-0000-7000-8000-000000000003',
  locked: '0192f0a0-0000-7000-8000-000000000004',
  stale: '0192f0a0-0000-7000-8000-000000000005',
  central: '0192f0a0-0000-7000-8000-000000000006',
  moved: '0192f0a0-0000-7000-8000-000000000007',
};

export const USER = { id: 'para.one', name: 'Alex Paramedic', role: 'R8003', activity: 'B0107', notifies: true };
export const SILENT_USER = { id: 'gp.day', name: 'Sam Daytime', role: 'R0260', activity: 'B0170', notifies: false };

export function status(overrides = {}) {
  return {
    enrolled: true,
    device_id: '0192f0a0-1111-7000-8000-00000000d001',
    region: 'NE',
    org_name: 'North Eastern Ambulance (synthetic)',
    setting: 'ambulance',
    central_url: 'http://127.0.0.1:7443',
    online: true,
    signed_in_user: null,
    locked: true,
    cached_flags: 2000,
    cursor: 2000,
    last_sync_at: '2026-11-24T16:30:00Z',
    data_age_seconds: 3 * 3600,
    stale: false,
    queued_events: 2,
    oldest_queued_age_seconds: 40 * 60,
    dead_letters: [{ event_id: '0192f0a0-2222-7000-8000-a1b2c3d4e5f6', reason: 'rejected: unknown region', created_at: '2026-11-20T08:00:00Z' }],
    lease_expires_at: '2026-11-27T16:30:00Z',
    wiped_reason: null,
    ...overrides,
  };
}

const CAVEATS = [
  "Changes made since this device's copy was last updated (3 hours ago)",
  'Children whose record is marked sensitive: they cannot carry a flag',
  'Children not matched to an NHS number',
  'Children of local authorities outside England: Wales and Scotland keep their own registers',
  'A child who is not yet on a plan',
];

function base(overrides) {
  return {
    check_id: CHECK_IDS.miss,
    outcome: 'no_record',
    nhs_number: '999 000 0026',
    reason: null,
    source: 'cache',
    data_as_of: '2026-11-24T16:30:00Z',
    data_age_seconds: 3 * 3600,
    stale: false,
    opened: false,
    notifies: true,
    notification: null,
    person: null,
    plans: [],
    local_authority: null,
    access_history: [],
    caveats: [],
    message: '',
    ...overrides,
  };
}

const LA = { ods: '812', name: 'Northfield Borough Council (synthetic)', emergency_phone: '0300 555 0101', office_phone: '0300 555 0202' };
// A child who moved: the new LA's current plan beside the old LA's ended one.
const NEW_LA = { ods: '815', name: 'Southmoor City Council (synthetic)', emergency_phone: '0300 555 0303', office_phone: '0300 555 0404' };

export const VIEWS = {
  miss: base({ caveats: CAVEATS, message: 'No CP-IS record found for this NHS number' }),
  stale: base({
    check_id: CHECK_IDS.stale, nhs_number: '999 000 0050', data_age_seconds: 3 * 86400, stale: true,
    data_as_of: '2026-11-21T19:30:00Z', caveats: CAVEATS, message: 'No CP-IS record found for this NHS number',
  }),
  central: base({
    check_id: CHECK_IDS.central, nhs_number: '999 000 0069', source: 'central', data_age_seconds: 5,
    data_as_of: '2026-11-24T19:29:55Z', caveats: CAVEATS, message: 'No CP-IS record found for this NHS number',
  }),
  found: base({
    check_id: CHECK_IDS.found, outcome: 'record_found', nhs_number: '999 000 0018', notifies: true,
    message: 'A CP-IS record exists for this NHS number',
  }),
  silent: base({
    check_id: CHECK_IDS.silent, outcome: 'record_found', nhs_number: '999 000 0034', notifies: false,
    message: 'A CP-IS record exists for this NHS number',
  }),
  moved: base({
    check_id: CHECK_IDS.moved, outcome: 'record_found', nhs_number: '999 000 0077', notifies: true,
    message: 'A CP-IS record exists for this NHS number', local_authority: NEW_LA, local_authorities: [NEW_LA, LA],
  }),
  locked: base({
    check_id: CHECK_IDS.locked, outcome: 'locked', nhs_number: '999 000 0042', data_age_seconds: 9 * 86400,
    reason: 'Offline access ended on 20 November 2026: this device must reconnect before its copy can be opened',
    caveats: ["Phone the local authority emergency duty team or use your trust's safeguarding pathway"],
    message: "This device's copy cannot be opened",
  }),
};

// As the engine sends them: each plan with its status in words and its LA.
const PLANS = [
  { kind: 'CPPI', kind_in_words: 'Child protection plan', start: '2026-02-01', end: null, due: null, status: 'current', status_text: 'Current', ended_on: null, shown_until: null, local_authority: LA, local_authority_ods: '812' },
  { kind: 'LACI', kind_in_words: 'Looked after child', start: '2024-05-10', end: '2026-01-15', due: null, status: 'ended', status_text: 'Ended on 15 Jan 2026; shown until 15 Jan 2027', ended_on: '2026-01-15', shown_until: '2027-01-15', local_authority: LA, local_authority_ods: '812' },
];

const HISTORY = [
  { at: '2026-11-23T22:15:00Z', org_ods: 'RX9', org_name: 'Synthetic Ambulance Service', role: 'Paramedic', setting: 'ambulance' },
  { at: '2026-11-20T09:05:00Z', org_ods: 'RXX01', org_name: 'Synthetic General Hospital', role: 'Emergency department nurse', setting: 'emergency-department' },
];

export const OPENED = {
  [CHECK_IDS.found]: {
    ...VIEWS.found,
    opened: true,
    notification: 'queued',
    person: { family_name: 'TESTER', given_names: 'Jamie Lee', date_of_birth: '2019-07-04', local_id: 'NBC-000123' },
    plans: PLANS,
    local_authority: LA,
    access_history: HISTORY,
  },
  [CHECK_IDS.silent]: {
    ...VIEWS.silent,
    opened: true,
    notification: 'not_sent',
    person: { family_name: 'EXAMPLE', given_names: 'Robin', date_of_birth: '1995-03-12', local_id: null },
    plans: [{ kind: 'UCPI', kind_in_words: 'Unborn child protection plan', start: '2026-09-01', end: null, due: '2026-11-10', status: 'due_passed', status_text: 'Due date passed on 10 Nov 2026; shown until 8 Dec 2026', ended_on: null, shown_until: '2026-12-08', local_authority: { ...LA, office_phone: null }, local_authority_ods: '812' }],
    local_authority: { ...LA, office_phone: null },
    local_authorities: [{ ...LA, office_phone: null }],
    access_history: [],
  },
  [CHECK_IDS.moved]: {
    ...VIEWS.moved,
    opened: true,
    notification: 'queued',
    person: { family_name: 'MOVER', given_names: 'Sam', date_of_birth: '2019-02-03', local_id: null },
    plans: [
      { kind: 'CPPI', kind_in_words: 'Child protection plan', start: '2026-10-10', end: null, due: null, status: 'current', status_text: 'Current', ended_on: null, shown_until: null, local_authority: NEW_LA, local_authority_ods: '815' },
      { kind: 'CPPI', kind_in_words: 'Child protection plan', start: '2025-01-01', end: '2026-10-01', due: null, status: 'ended', status_text: 'Ended on 1 Oct 2026; shown until 1 Oct 2027', ended_on: '2026-10-01', shown_until: '2027-10-01', local_authority: LA, local_authority_ods: '812' },
      { kind: 'LACI', kind_in_words: 'Looked after child', start: '2027-01-04', end: null, due: null, status: 'not_started', status_text: 'Starts on 4 Jan 2027', ended_on: null, shown_until: null, local_authority: NEW_LA, local_authority_ods: '815' },
    ],
    access_history: [],
    caveats: ["This answer comes from this device's copy, last updated 19:30 GMT, 24 Nov 2026: changes since then are not shown.", 'Access history comes from the central service and is shown when this device is connected.'],
  },
};

/** NHS digits -> the view check_patient answers with. */
export const CHECKS = {
  9990000026: VIEWS.miss,
  9990000050: VIEWS.stale,
  9990000069: VIEWS.central,
  9990000018: VIEWS.found,
  9990000034: VIEWS.silent,
  9990000077: VIEWS.moved,
  9990000042: VIEWS.locked,
};

// Search by name and date of birth: the engine's SearchView as serialised (a match carries the
// check answer's fields). Names are synthetic.
export const SEARCH_ID = '0192f0a0-0000-7000-8000-00000000a001';

function card(candidate, familyName, givenNames, dob, matched, differed) {
  return {
    candidate, family_name: familyName, given_names: givenNames, date_of_birth: dob, matched, differed,
    how: { date_of_birth: 'same', family_name: 'same', given_name: 'same', sex: 'not_entered', postcode_district: 'not_entered' },
  };
}

function searchBase(overrides) {
  return {
    search_id: SEARCH_ID, outcome: 'no_match', message: '', reason: null, source: 'cache',
    data_as_of: '2026-11-24T16:30:00Z', data_age_seconds: 3 * 3600, stale: false, candidates: [], caveats: [],
    ...overrides,
  };
}

const SEARCH_CAVEATS = [
  ...CAVEATS,
  'Names change (adoption, a new family name, a parent’s choice): a child may be held under another name.',
  'Names are spelt and transliterated in different ways: try other spellings, or search by NHS number when you have it.',
  'The local authority may not have matched the child to an NHS number; such children cannot be found by any search here.',
];

export const SEARCHES = {
  oneill: {
    ...VIEWS.found,
    caveats: ['Found by name and date of birth, not by a verified NHS number: make sure this is your patient.'],
    outcome: 'match', search_id: SEARCH_ID, found_by: 'name_and_date_of_birth', candidates: [],
    matched: card(1, "O'Neill", 'Siân', '2019-03-07', ['Date of birth: the same', 'Family name: the same apart from accents, spaces or punctuation', 'Given name: the same apart from accents, spaces or punctuation'], []),
  },
  smith: searchBase({
    outcome: 'possible_matches', message: 'Possible matches: confirm which one is your patient, or choose none of these',
    caveats: ['No plan details are shown until you confirm the person is your patient. If none of them is, choose none of these.'],
    candidates: [
      card(1, 'Smith', 'John', '2018-05-20', ['Date of birth: the same', 'Family name: the same', 'Given name: the same'], []),
      card(2, 'Smyth', 'Jon', '2018-05-20', ['Date of birth: the same', 'Family name: sounds alike, spelt differently', 'Given name: sounds alike, spelt differently'], []),
      card(3, 'Smith', 'Grace', '2018-05-20', ['Date of birth: the same', 'Family name: the same'], ['Given name: different']),
    ],
  }),
  testwood: searchBase({
    outcome: 'too_many', message: 'Too many people match these details to show any of them',
    caveats: ['Add the given name, check the spelling and the date of birth, or check by NHS number when you have it.'],
  }),
  brown: searchBase({ outcome: 'no_match', message: 'No CP-IS record found for these details', caveats: SEARCH_CAVEATS }),
  locked: searchBase({
    outcome: 'locked', message: "This device's copy cannot be opened", stale: true,
    reason: 'Offline access ended on 20 November 2026: this device must reconnect before its copy can be opened',
    caveats: ["Phone the local authority emergency duty team or use your trust's safeguarding pathway"],
  }),
};

/** candidate number -> the check answer choose_candidate gives. */
export const CHOSEN = {
  1: { ...VIEWS.found, caveats: ['Found by name and date of birth, not by a verified NHS number: make sure this is your patient.'] },
};

export const NONE_OF_THESE = SEARCHES.brown;

/** The region's LAs and their public numbers, as `emergency_numbers` answers (name order). */
export const EMERGENCY_NUMBERS = {
  region: 'NE',
  generated_at: '2026-11-24T16:30:00Z',
  local_authorities: [
    { ods: '812', name: 'Northfield Borough Council (synthetic)', emergency_phone: '0300 555 0101', office_phone: '0300 555 0202' },
    { ods: '815', name: 'Southmoor City Council (synthetic)', emergency_phone: '0300 555 0303', office_phone: '0300 555 0404' },
    { ods: '813', name: 'St. Aldwyn County Council (synthetic)', emergency_phone: '0300 555 0505', office_phone: null },
  ],
};
