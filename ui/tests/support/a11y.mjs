// Accessibility sweep of one screen state: axe-core (WCAG 2.0/2.1/2.2 A and AA plus best practice) at
// 320, 360 and 1280 CSS px wide in the light and the dark appearance, and a check at 320 px that
// nothing scrolls sideways or is cut off (WCAG 1.4.10). Each sweep prints one line with its counts.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
export const AXE_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'];
export const WIDTHS = [320, 360, 1280];
export const SCHEMES = ['light', 'dark'];
const HEIGHT = { 320: 640, 360: 640, 1280: 800 };

/** Every sweep's counts, in the order the tests reached them. */
export const sweeps = [];

/** Resolves after the page has drawn twice: layout, and the browser's focus fix-up (a focused control
 * that became disabled loses focus at the next rendering update, not at once). */
export const settle = (page) => page.evaluate(() => new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok))));

/** Runs axe over the whole page as it is now (focus included) and returns its violations. */
export async function axe(page) {
  // Evaluated through the debugging protocol, so the page's CSP (script-src 'self') does not apply.
  if (!(await page.evaluate(() => Boolean(window.axe)))) await page.evaluate(AXE_SOURCE);
  return page.evaluate(async (tags) => {
    const r = await window.axe.run(document, { runOnly: { type: 'tag', values: tags }, resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, targets: v.nodes.map((n) => `${n.target.join(' ')}: ${n.failureSummary?.split('\n').slice(1, 2).join('').trim()}`) }));
  }, AXE_TAGS);
}

/** Elements that stick out past the right edge of the viewport, and whether the page scrolls sideways. */
export async function sideways(page) {
  return page.evaluate(() => {
    const root = document.documentElement;
    const width = root.clientWidth;
    const out = [];
    for (const el of document.body.querySelectorAll('*')) {
      const r = el.getBoundingClientRect();
      if (r.width <= 1 || r.height <= 1 || r.right <= width + 0.5) continue;
      const cs = getComputedStyle(el);
      if (cs.visibility === 'hidden' || el.closest('[hidden]')) continue;
      // Visually hidden content (clipped to nothing, for screen readers) is not on screen to scroll to.
      let clipped = false;
      for (let a = el; a && !clipped; a = a.parentElement) {
        const s = getComputedStyle(a);
        clipped = s.clipPath !== 'none' || (s.clip !== 'auto' && s.clip !== '');
      }
      if (clipped) continue;
      // Report the outermost culprit only: its children stick out because it does.
      if (out.some((o) => o.el.contains(el))) continue;
      out.push({ el, what: `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}${el.className && typeof el.className === 'string' ? `.${el.className.trim().split(/\s+/).join('.')}` : ''} right edge at ${Math.round(r.right)}px` });
    }
    return { scrolls: root.scrollWidth > root.clientWidth, scrollWidth: root.scrollWidth, clientWidth: width, culprits: out.map((o) => o.what) };
  });
}

/**
 * Sweeps the page's current state in every width and appearance, then puts the viewport and colour
 * scheme back. Focus is not touched, so a focused error summary is judged as the clinician sees it.
 * Fails the test, naming each rule and element, unless every run is clean.
 */
export async function sweep(page, label) {
  const before = page.viewportSize();
  const focused = await page.evaluate(() => document.activeElement?.id || document.activeElement?.tagName);
  const counts = {};
  const failures = [];
  let overflow = null;
  for (const scheme of SCHEMES) {
    await page.emulateMedia({ colorScheme: scheme });
    for (const width of WIDTHS) {
      await page.setViewportSize({ width, height: HEIGHT[width] });
      await settle(page);
      const v = await axe(page);
      counts[`${scheme} ${width}`] = v.reduce((n, x) => n + x.targets.length, 0);
      for (const x of v) failures.push(`[${scheme} ${width}px] ${x.id} (${x.impact}): ${x.help}\n      ${x.targets.join('\n      ')}`);
      if (width === 320 && scheme === 'light') overflow = await sideways(page);
    }
  }
  await page.emulateMedia({ colorScheme: null });
  await page.setViewportSize(before);
  await settle(page);
  const after = await page.evaluate(() => document.activeElement?.id || document.activeElement?.tagName);
  const line = `axe ${label}: ${SCHEMES.map((s) => `${s} ${WIDTHS.map((w) => `${w}:${counts[`${s} ${w}`]}`).join(' ')}`).join(' | ')}`
    + ` | sideways at 320: ${overflow.scrolls || overflow.culprits.length ? `${overflow.scrollWidth}px` : 'none'}`;
  sweeps.push({ label, counts, overflow });
  console.log(line);
  assert.equal(after, focused, 'the sweep leaves focus where it was');
  assert.deepEqual(failures, [], `${label}: axe violations\n  ${failures.join('\n  ')}`);
  assert.ok(!overflow.scrolls && overflow.culprits.length === 0,
    `${label}: at 320px the page is ${overflow.scrollWidth}px wide; sticking out: ${overflow.culprits.join(', ')}`);
}

/** WCAG contrast ratio of two computed colours ("rgb(r, g, b)"). */
export function contrast(a, b) {
  const lum = (c) => {
    const [r, g, bl] = c.match(/[\d.]+/g).slice(0, 3).map(Number).map((v) => {
      const x = v / 255;
      return x <= 0.04045 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}
