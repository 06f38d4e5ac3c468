// Touch targets as a gloved hand in a moving vehicle meets them: each primary action's size, and the
// gap between it and the nearest other control (WCAG 2.5.8 asks 24 px; the NHS asks 44 px for touch).
/* global document, getComputedStyle */

/** Size of the element matched by `sel` and its clearance to every other visible control on the page. */
export async function targetInfo(page, sel) {
  return page.evaluate((s) => {
    const el = document.querySelector(s);
    if (!el) return null;
    const r = el.getBoundingClientRect();
    const controls = [...document.querySelectorAll('a[href], button, input, select, textarea, [tabindex]:not([tabindex="-1"]), label')]
      .filter((c) => c !== el && !el.contains(c) && !c.contains(el))
      .filter((c) => { const b = c.getBoundingClientRect(); return b.width > 1 && b.height > 1 && getComputedStyle(c).visibility !== 'hidden'; });
    let gap = Infinity;
    let nearest = null;
    for (const c of controls) {
      const b = c.getBoundingClientRect();
      const dx = Math.max(0, b.left - r.right, r.left - b.right);
      const dy = Math.max(0, b.top - r.bottom, r.top - b.bottom);
      const d = Math.hypot(dx, dy);
      if (d < gap) { gap = d; nearest = `${c.tagName.toLowerCase()}${c.id ? `#${c.id}` : ''}`; }
    }
    return { width: r.width, height: r.height, gap, nearest };
  }, sel);
}
