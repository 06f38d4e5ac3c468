// A small W3C WebDriver client over fetch: just what the app's e2e needs (tauri-driver speaks W3C).
const ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';

export class WebDriver {
  constructor(base) {
    this.base = base.replace(/\/$/, '');
    this.session = null;
  }

  async cmd(method, path, body) {
    const res = await fetch(`${this.base}${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await res.json().catch(() => ({}));
    if (!res.ok || (json.value && json.value.error)) {
      const v = json.value || {};
      throw new Error(`WebDriver ${method} ${path}: ${v.error || res.status} ${v.message || ''}`.trim());
    }
    return json.value;
  }

  s(path) {
    return `/session/${this.session}${path}`;
  }

  async start(application, env = {}) {
    const caps = { browserName: 'wry', 'tauri:options': { application, env } };
    const value = await this.cmd('POST', '/session', { capabilities: { alwaysMatch: caps }, desiredCapabilities: caps });
    this.session = value.sessionId;
    return value;
  }

  async quit() {
    if (!this.session) return;
    await this.cmd('DELETE', `/session/${this.session}`).catch(() => {});
    this.session = null;
  }

  title() { return this.cmd('GET', this.s('/title')); }

  async find(css) {
    const v = await this.cmd('POST', this.s('/element'), { using: 'css selector', value: css });
    return v[ELEMENT];
  }

  async exec(script, ...args) {
    return this.cmd('POST', this.s('/execute/sync'), { script, args });
  }

  /** Polls a script until it returns a truthy value. */
  async waitFor(script, { timeout = 20000, interval = 150, what = script } = {}, ...args) {
    const until = Date.now() + timeout;
    let last;
    while (Date.now() < until) {
      try {
        last = await this.exec(script, ...args);
        if (last) return last;
      } catch (e) {
        last = e.message;
      }
      await new Promise((r) => setTimeout(r, interval));
    }
    throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
  }

  waitForSelector(css, opts = {}) {
    return this.waitFor('return !!document.querySelector(arguments[0]);', { what: css, ...opts }, css);
  }

  async click(css) {
    await this.waitForSelector(css);
    const id = await this.find(css);
    await this.cmd('POST', this.s(`/element/${id}/click`), {});
  }

  /** Types into a field as a person would (one key event per character). */
  async type(css, text) {
    await this.waitForSelector(css);
    const id = await this.find(css);
    await this.cmd('POST', this.s(`/element/${id}/clear`), {});
    await this.cmd('POST', this.s(`/element/${id}/value`), { text, value: [...text] });
  }

  async text(css) {
    await this.waitForSelector(css);
    return this.exec('return document.querySelector(arguments[0]).innerText.replace(/\\s+/g, " ").trim();', css);
  }

  async screenshot() {
    return Buffer.from(await this.cmd('GET', this.s('/screenshot')), 'base64');
  }

  /**
   * The whole page, not only the part in the window: the window is grown to the page's height for
   * the screenshot and then put back (WebKit's screenshots cover the visible area only).
   */
  async fullPageScreenshot(maxHeight = 3000) {
    let before = null;
    try {
      before = await this.cmd('GET', this.s('/window/rect'));
      const height = await this.exec('return document.documentElement.scrollHeight;');
      if (height > before.height) {
        await this.cmd('POST', this.s('/window/rect'), { width: before.width, height: Math.min(maxHeight, height + 40) });
        await new Promise((r) => setTimeout(r, 400));
      }
      return await this.screenshot();
    } catch {
      return this.screenshot();
    } finally {
      if (before) await this.cmd('POST', this.s('/window/rect'), { width: before.width, height: before.height }).catch(() => {});
    }
  }
}
