// Applies the appearance chosen on the status screen before the page is first drawn, so a Dark choice
// never flashes light at night. A classic script in the head for that reason; the key and values are
// those of APPEARANCE_KEY and APPEARANCES in logic.js.
try {
  const chosen = window.localStorage.getItem('cpis-field.appearance');
  if (chosen === 'light' || chosen === 'dark') document.documentElement.dataset.appearance = chosen;
} catch {
  // No storage: the app follows the device.
}
