// Builds ui/dist for the Tauri window: nhsuk-frontend's compiled CSS and images plus our own
// ui/src files, with nothing left that would reach outside the bundle at run time.
import { cpSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');
const nhsuk = join(here, 'node_modules', 'nhsuk-frontend', 'dist', 'nhsuk');

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });

// The package's fonts are served from the internet, so the @font-face rules go: the NHS font
// stack then falls back to Arial, which is what the design system expects offline.
let css = readFileSync(join(nhsuk, 'nhsuk-frontend.min.css'), 'utf8');
css = css.replace(/@font-face\{[^}]*\}/g, '').replace(/\/\*# sourceMappingURL=[^*]*\*\//g, '');
writeFileSync(join(dist, 'nhsuk.css'), css);
cpSync(join(nhsuk, 'assets'), join(dist, 'assets'), { recursive: true });

for (const f of readdirSync(join(here, 'src'))) cpSync(join(here, 'src', f), join(dist, f));
cpSync(join(here, '..', 'icons', '128x128.png'), join(dist, 'icon.png'));

// Guard: no URL in the bundle may point outside it (the CSP would block it anyway; this fails early).
const remote = /(?:url\(\s*['"]?|(?:src|href)\s*=\s*['"])(?:https?:)?\/\//i;
for (const f of readdirSync(dist)) {
  if (!/\.(css|js|html)$/.test(f)) continue;
  const text = readFileSync(join(dist, f), 'utf8');
  const m = remote.exec(text);
  if (m) {
    console.error(`build: ${f} refers to a remote address near: ${text.slice(m.index, m.index + 80)}`);
    process.exit(1);
  }
}
console.log(`build: ui/dist ready (${readdirSync(dist).length} entries)`);
