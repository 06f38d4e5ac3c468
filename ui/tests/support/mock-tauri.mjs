// Installed into the page before any app script: a stand-in for Tauri 2's IPC global that answers the
// shell's commands from canned views and records every call, so screens are tested without the shell.
/* global window */
export function installMock(scenario) {
  const calls = [];
  const callbacks = new Map();
  const listeners = [];
  let nextId = 1;
  const st = JSON.parse(JSON.stringify(scenario.status));
  let attemptsLeft = scenario.attemptsLeft ?? 4;
  let pendingSync = null;
  const fail = (code, extra = {}) => Promise.reject({ code, message: extra.message ?? code, attempts_left: null, retry_after_secs: null, ...extra });

  const handlers = {
    app_status: () => st,
    enrol: ({ centralUrl, code }) => {
      if (code === 'USED-CODE') return fail('enrolment_refused', { message: 'code already used' });
      Object.assign(st, { enrolled: true, central_url: centralUrl, device_id: scenario.deviceId });
      return st;
    },
    // The shell's view of the organisation's managed configuration file; never its code.
    managed_enrolment: () => scenario.managed ?? { path: '/etc/cpis-field/managed.json', central_url: null, enrols_by_itself: false, problem: null },
    // `scenario.managedCode` stands for the code in the organisation's file, which stays in the shell.
    enrol_managed: ({ code }) => {
      if (!scenario.managed?.central_url) return fail('invalid_input', { message: 'no central service address is set by your organisation on this device' });
      const used = code ?? scenario.managedCode;
      if (!used) return fail('invalid_input', { message: 'enter the one-time enrolment code' });
      if (used === 'USED-CODE') return fail('enrolment_refused', { message: 'code already used' });
      Object.assign(st, { enrolled: true, central_url: scenario.managed.central_url, device_id: scenario.deviceId });
      return st;
    },
    sign_in: ({ userId, pin }) => {
      if (scenario.signInError) return fail(scenario.signInError.code, scenario.signInError);
      if (pin !== scenario.pin) {
        attemptsLeft -= 1;
        return fail('wrong_pin', { message: 'wrong PIN', attempts_left: attemptsLeft });
      }
      st.signed_in_user = { ...scenario.user, id: userId };
      st.locked = false;
      return st;
    },
    sign_out: () => {
      st.signed_in_user = null;
      st.locked = true;
      return null;
    },
    check_patient: ({ nhsNumber }) => {
      const view = scenario.checks[nhsNumber];
      if (view) return view;
      return { ...scenario.checks['9990000026'], nhs_number: nhsNumber.replace(/^(\d{3})(\d{3})(\d{4})$/, '$1 $2 $3') };
    },
    search_patient: ({ familyName }) => {
      const key = familyName.toLowerCase().replace(/[^a-z]/g, '');
      if (key === 'future') return fail('invalid_input', { message: 'date of birth: it is in the future' });
      return scenario.searches[key] ?? scenario.searches.brown;
    },
    choose_candidate: ({ candidate }) => scenario.chosen[candidate] ?? fail('invalid_input', { message: 'candidate: choose a number from 1 to 3' }),
    none_of_these: () => scenario.noneOfThese,
    open_alert: ({ checkId }) => scenario.opened[checkId] ?? fail('invalid_input', { message: 'unknown check' }),
    keep_alive: () => (st.signed_in_user ? null : fail('not_signed_in', { message: 'sign in first' })),
    // No sign-in needed: the engine reads the signed copy kept beside the locked cache.
    emergency_numbers: () => (scenario.emergencyNumbersError
      ? fail(scenario.emergencyNumbersError.code, scenario.emergencyNumbersError)
      : scenario.emergencyNumbers),
    sync_now: () => new Promise((resolve, reject) => { pendingSync = { resolve, reject }; }),
    'plugin:event|listen': ({ event, handler }) => {
      const id = nextId++;
      listeners.push({ id, event, handler });
      return id;
    },
    'plugin:event|unlisten': () => null,
  };

  window.__CPIS_CONFIG__ = { idleTimeoutMs: scenario.idleTimeoutMs };
  window.__mock = {
    calls,
    status: st,
    listenerCount: (event) => listeners.filter((l) => l.event === event).length,
    emit(event, payload) {
      for (const l of listeners.filter((x) => x.event === event)) callbacks.get(l.handler)?.({ event, id: l.id, payload });
    },
    finishSync(summary) {
      if (pendingSync) pendingSync.resolve(summary);
      pendingSync = null;
    },
    failSync(code, message = code) {
      if (pendingSync) pendingSync.reject({ code, message, attempts_left: null, retry_after_secs: null });
      pendingSync = null;
    },
    setStatus(patch) { Object.assign(st, patch); },
  };
  window.__TAURI_INTERNALS__ = {
    transformCallback(cb) {
      const id = nextId++;
      callbacks.set(id, cb);
      return id;
    },
    async invoke(cmd, args = {}) {
      calls.push({ cmd, args: JSON.parse(JSON.stringify(args)) });
      const fn = handlers[cmd];
      if (!fn) return Promise.reject({ code: 'internal', message: `command ${cmd} not allowed` });
      return fn(args);
    },
  };
}
