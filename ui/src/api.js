// The app's only door to the device engine: the shell's typed commands and its sync-progress event.
// Uses Tauri 2's injected IPC global, so nothing is loaded from outside the bundle.

function internals() {
  const t = window.__TAURI_INTERNALS__;
  if (!t || typeof t.invoke !== 'function') {
    throw new Error('This screen must run inside the CP-IS Field app');
  }
  return t;
}

/** Invokes a command; a rejected promise carries the shell's ErrorView ({code, message, ...}). */
async function call(cmd, args = {}) {
  try {
    return await internals().invoke(cmd, args);
  } catch (err) {
    if (err && typeof err === 'object' && 'code' in err) throw err;
    throw { code: 'internal', message: String(err?.message ?? err), attempts_left: null, retry_after_secs: null };
  }
}

export const api = {
  appStatus: () => call('app_status'),
  enrol: (centralUrl, code) => call('enrol', { centralUrl, code }),
  // The organisation's settings: the address it set (never its code) and whether to enrol unasked.
  managedEnrolment: () => call('managed_enrolment'),
  // With no code, the shell uses the code from the organisation's file (once per start).
  enrolManaged: (code) => call('enrol_managed', { code: code || null }),
  signIn: (userId, pin) => call('sign_in', { userId, pin }),
  signOut: () => call('sign_out'),
  checkPatient: (nhsNumber, pregnant, caseReference) =>
    call('check_patient', { nhsNumber, pregnant, caseReference: caseReference || null }),
  openAlert: (checkId) => call('open_alert', { checkId }),
  searchPatient: ({ familyName, dateOfBirth, givenName, sex, postcodeDistrict, caseReference }) =>
    call('search_patient', {
      familyName, dateOfBirth, givenName: givenName || null, sex: sex || null,
      postcodeDistrict: postcodeDistrict || null, caseReference: caseReference || null,
    }),
  chooseCandidate: (searchId, candidate) => call('choose_candidate', { searchId, candidate }),
  noneOfThese: (searchId) => call('none_of_these', { searchId }),
  syncNow: () => call('sync_now'),
  keepAlive: () => call('keep_alive'),
  // Needs no sign-in: the locked screens list the region's duty numbers.
  emergencyNumbers: () => call('emergency_numbers'),
};

/**
 * Listens for the shell's `sync-progress` events (from "Sync now" and from background sync).
 * Same wire protocol as @tauri-apps/api's `listen`, without bundling it.
 */
export async function onSyncProgress(handler) {
  const t = internals();
  const callbackId = t.transformCallback((event) => handler(event.payload));
  const eventId = await t.invoke('plugin:event|listen', {
    event: 'sync-progress',
    target: { kind: 'Any' },
    handler: callbackId,
  });
  return () => t.invoke('plugin:event|unlisten', { event: 'sync-progress', eventId });
}
