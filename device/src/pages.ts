/**
 * The device's pages: plain HTML with one stylesheet and one small script (which only reads a
 * chosen file into its text box; everything works without it). Labels on every input, errors
 * tied to their fields with aria-describedby and listed in a summary at the top, and a layout
 * that works at phone width. Every value is escaped; secrets are never rendered back.
 */
import { SECRET_FIELDS, type Field, type FormValues, type Problem } from './setup-form.js';

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);
}
const e = escapeHtml;
/** Messages start lower-case in code (they are also log text); on the page, as sentences. */
const sentence = (s: string) => e(s.charAt(0).toUpperCase() + s.slice(1));

export interface DeviceFacts {
  serial: string;
  network: string;
  settings: string;
  green: string;
  red: string;
  certificate: { subject: string; issuer: string; notAfter: string; thumbprint: string } | undefined;
  registrationId: string | undefined;
}

function layout(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${e(title)}</title>
<link rel="stylesheet" href="/static/setup.css">
</head>
<body>
<header class="bar"><span class="brand">Gate controller</span></header>
<main id="main">
${body}
</main>
<script src="/static/setup.js" defer></script>
</body>
</html>
`;
}

/** A label secret typed in: never autocompleted, never rendered back. */
function secretInput(id: string, label: string): string {
  return `<div class="field">
    <label for="${id}">${e(label)}</label>
    <input id="${id}" name="${id}" type="password" autocomplete="off" required>
  </div>`;
}

export function loginPage(serial: string, opts: { error?: string }): string {
  return layout(
    `Sign in · ${serial}`,
    `<h1>Set up gate controller ${e(serial)}</h1>
<p>Enter the setup password and the application key printed on the device's label.</p>
${opts.error === undefined ? '' : `<div class="error-summary" role="alert"><p>${e(opts.error)}</p></div>`}
<form method="post" action="/login" class="card">
  ${secretInput('setupPassword', 'Setup password')}
  ${secretInput('applicationKey', 'Application key')}
  <button type="submit">Sign in</button>
</form>`,
  );
}

function factsList(f: DeviceFacts): string {
  const cert =
    f.certificate === undefined
      ? '<dt>Certificate</dt><dd>none yet (paste the factory bundle below, or use a symmetric key)</dd>'
      : `<dt>Certificate subject</dt><dd id="cert-subject">${e(f.certificate.subject)}</dd>
<dt>Issued by</dt><dd>${e(f.certificate.issuer)}</dd>
<dt>Certificate expires</dt><dd id="cert-expiry"><time datetime="${e(f.certificate.notAfter)}">${e(f.certificate.notAfter.replace('T', ' ').replace(/\.\d+Z$/, ' UTC'))}</time></dd>
<dt>Thumbprint (SHA-256)</dt><dd class="mono">${e(f.certificate.thumbprint)}</dd>`;
  return `<section aria-labelledby="device-h" class="card">
<h2 id="device-h">This device</h2>
<dl class="facts">
<dt>Device id</dt><dd id="device-id">${e(f.serial)}</dd>
${f.registrationId === undefined ? '' : `<dt>Registration id</dt><dd id="registration-id">${e(f.registrationId)}</dd>`}
<dt>Network</dt><dd>${e(f.network)}</dd>
<dt>Settings</dt><dd id="settings-source">${e(f.settings)}</dd>
${cert}
<dt>LEDs</dt><dd id="leds"><span class="led green" aria-hidden="true"></span>green ${e(f.green)}, <span class="led red" aria-hidden="true"></span>red ${e(f.red)}</dd>
</dl>
</section>`;
}

type Render = (name: Field, label: string, input: string, hint?: string) => string;

export function setupPage(facts: DeviceFacts, values: FormValues, problems: Problem[], csrf: string): string {
  const errorOf = new Map<Field, string>();
  for (const p of problems) if (!errorOf.has(p.field)) errorOf.set(p.field, p.message);
  const val = (n: Field) => (SECRET_FIELDS.has(n) ? '' : (values[n] ?? ''));
  const aria = (n: Field, hint: boolean) => {
    const ids = [hint ? `${n}-hint` : '', errorOf.has(n) ? `${n}-error` : ''].filter(Boolean).join(' ');
    return `${ids === '' ? '' : ` aria-describedby="${ids}"`}${errorOf.has(n) ? ' aria-invalid="true"' : ''}`;
  };
  const field: Render = (n, label, input, hint) =>
    `<div class="field${errorOf.has(n) ? ' has-error' : ''}">
  <label for="${n}">${e(label)}</label>
  ${hint === undefined ? '' : `<p class="hint" id="${n}-hint">${e(hint)}</p>`}
  ${errorOf.has(n) ? `<p class="error" id="${n}-error"><span class="visually-hidden">Error:</span> ${sentence(errorOf.get(n) ?? '')}</p>` : ''}
  ${input}
</div>`;
  const textInput = (n: Field, label: string, opts: { type?: string; hint?: string; inputmode?: string; autocomplete?: string } = {}) =>
    field(n, label, `<input id="${n}" name="${n}" type="${opts.type ?? 'text'}" value="${e(val(n))}"${opts.inputmode === undefined ? '' : ` inputmode="${opts.inputmode}"`} autocomplete="${opts.autocomplete ?? 'off'}" spellcheck="false"${aria(n, opts.hint !== undefined)}>`, opts.hint);
  const textArea = (n: Field, label: string, hint: string, file: boolean) =>
    field(
      n,
      label,
      `<textarea id="${n}" name="${n}" rows="6" spellcheck="false" class="mono"${aria(n, true)}>${e(val(n))}</textarea>${file ? `\n  <label class="file">Or choose a file <input type="file" data-fills="${n}" accept=".pem,.crt,.key,.txt"></label>` : ''}`,
      hint,
    );
  const radios = (n: Field, legend: string, options: Array<[string, string, string?]>) =>
    `<fieldset class="choices${errorOf.has(n) ? ' has-error' : ''}" id="${n}"${errorOf.has(n) ? ` aria-describedby="${n}-error"` : ''}>
  <legend>${e(legend)}</legend>
  ${errorOf.has(n) ? `<p class="error" id="${n}-error"><span class="visually-hidden">Error:</span> ${sentence(errorOf.get(n) ?? '')}</p>` : ''}
  ${options
    .map(
      ([value, label, hint]) =>
        `<div class="choice"><input type="radio" id="${n}-${value}" name="${n}" value="${value}"${values[n] === value ? ' checked' : ''}><label for="${n}-${value}">${e(label)}${hint === undefined ? '' : `<span class="hint">${e(hint)}</span>`}</label></div>`,
    )
    .join('\n  ')}
</fieldset>`;

  const summary =
    problems.length === 0
      ? ''
      : `<div class="error-summary" role="alert" tabindex="-1" id="error-summary">
<h2>There ${problems.length === 1 ? 'is a problem' : `are ${problems.length} problems`} with the settings</h2>
<ul>${problems.map((p) => `<li><a href="#${p.field}">${sentence(p.message)}</a></li>`).join('')}</ul>
</div>`;

  return layout(
    `${problems.length > 0 ? 'Error: ' : ''}Setup · ${facts.serial}`,
    `<h1>Set up gate controller ${e(facts.serial)}</h1>
${summary}
${factsList(facts)}
<form method="post" action="/setup" class="card" novalidate>
<input type="hidden" name="csrf" value="${e(csrf)}">
<fieldset>
  <legend>Wi-Fi network</legend>
  ${textInput('ssid', 'Network name (SSID)', { autocomplete: 'off' })}
  ${textInput('wifiPassword', 'Passphrase', { type: 'password', hint: 'Leave empty for an open network.' })}
</fieldset>
${radios('mode', 'Operation mode', [
  ['web', 'Web server', 'Switched from a page on the local network, with the application key.'],
  ['hub', 'Hub', 'Listens only to the hub: C2D messages and direct methods.'],
])}
<fieldset class="hub-only">
  <legend>Hub connection</legend>
  ${radios('hubKind', 'Connect with', [
    ['dps', 'Device Provisioning Service'],
    ['connectionString', 'A device connection string'],
  ])}
  <div class="cs-only">
  ${field('connectionString', 'Device connection string', `<input id="connectionString" name="connectionString" type="password" value="" autocomplete="off" spellcheck="false"${aria('connectionString', true)}>`, 'HostName=…;DeviceId=…;SharedAccessKey=…')}
  </div>
  <div class="dps-only">
  ${textInput('provisioningHost', 'Provisioning host', { hint: 'The DPS endpoint, e.g. global.azure-devices-provisioning.net or your Gatehouse host.' })}
  ${textInput('idScope', 'ID scope', { hint: '0ne followed by 8 hexadecimal digits.' })}
  ${textInput('registrationId', 'Registration id', { hint: "With a certificate, the certificate's common name." })}
  ${radios('attestation', 'Attestation', [
    ['x509', 'X.509 certificate', 'The bundle from the factory line.'],
    ['symmetricKey', 'Symmetric key'],
  ])}
  <div class="x509-only">
  ${textArea('certPem', 'Certificate chain (PEM)', 'chain.pem: the device certificate first, then its CA certificates.', true)}
  ${textArea('keyPem', 'Private key (PEM)', 'device.key. Leave empty to keep the key the factory left on this device.', true)}
  ${textInput('estGroup', 'Renewal group (EST)', { hint: 'The enrollment group the certificate renews in, before it expires. Empty: no automatic renewal.' })}
  </div>
  <div class="sk-only">
  ${textInput('symmetricKey', 'Symmetric key', { type: 'password', hint: "The device's own key (for a group, the key derived for this registration id)." })}
  </div>
  </div>
</fieldset>
<fieldset>
  <legend>Timings</legend>
  ${textInput('pulseMs', 'Relay pulse for Activate (ms)', { inputmode: 'numeric', hint: '50 to 60000.' })}
  ${textInput('softResetMs', 'Button hold for a restart (ms)', { inputmode: 'numeric' })}
  ${textInput('factoryResetMs', 'Button hold for a factory reset (ms)', { inputmode: 'numeric', hint: 'Longer than the restart hold.' })}
</fieldset>
<button type="submit">Save and restart</button>
</form>
<form method="post" action="/logout" class="signout"><input type="hidden" name="csrf" value="${e(csrf)}"><button type="submit" class="secondary">Sign out</button></form>`,
  );
}

export function savedPage(serial: string, mode: 'web' | 'hub'): string {
  return layout(
    `Saved · ${serial}`,
    `<h1>Settings saved</h1>
<div class="card" role="status">
<p>Gate controller ${e(serial)} is restarting in <strong>${mode === 'hub' ? 'hub' : 'web server'} mode</strong>.</p>
<p>${mode === 'hub' ? 'This setup page closes now: the device listens only to the hub. Hold the button for a factory reset to set it up again.' : 'The setup page closes; the control page opens at the same address once the device has joined the network.'}</p>
</div>`,
  );
}

export function controlPage(serial: string, relay: string, message?: { ok: boolean; text: string }): string {
  return layout(
    `Gate controller ${serial}`,
    `<h1>Gate controller ${e(serial)}</h1>
${message === undefined ? '' : `<div class="${message.ok ? 'notice' : 'error-summary'}" role="${message.ok ? 'status' : 'alert'}"><p>${e(message.text)}</p></div>`}
<p>The relay is <strong id="relay-state">${e(relay)}</strong>.</p>
<form method="post" action="/control" class="card">
  ${secretInput('applicationKey', 'Application key')}
  <div class="actions">
    <button type="submit" name="action" value="Activate">Activate</button>
    <button type="submit" name="action" value="On" class="secondary">On</button>
    <button type="submit" name="action" value="Off" class="secondary">Off</button>
  </div>
</form>`,
  );
}

export const SETUP_CSS = `:root{color-scheme:light;--ink:#1b1b1b;--muted:#505a5f;--line:#b1b4b6;--accent:#1d4ed8;--error:#b3261e;--ok:#00703c;--bg:#f4f5f6}
*{box-sizing:border-box}
body{margin:0;font:1rem/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:var(--bg)}
.bar{background:#0b0c0c;color:#fff;padding:.75rem 1rem}.brand{font-weight:700}
main{max-width:42rem;margin:0 auto;padding:1rem}
h1{font-size:1.6rem;line-height:1.2;margin:.5rem 0 1rem}h2{font-size:1.2rem;margin:0 0 .75rem}
.card{background:#fff;border:1px solid var(--line);border-radius:6px;padding:1rem;margin:0 0 1rem}
fieldset{border:0;padding:0;margin:0 0 1.25rem;min-width:0}
legend{font-weight:700;font-size:1.1rem;padding:0;margin-bottom:.5rem}
.field{margin:0 0 1rem}
label{display:block;font-weight:600;margin-bottom:.25rem}
.hint{display:block;color:var(--muted);font-weight:400;font-size:.9rem;margin:0 0 .25rem}
input[type=text],input[type=password],textarea{width:100%;font:inherit;padding:.5rem;border:2px solid var(--ink);border-radius:4px;background:#fff}
textarea.mono,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85rem;word-break:break-all}
input:focus,textarea:focus,button:focus,a:focus{outline:3px solid #ffbf47;outline-offset:0}
.choices{margin-bottom:1rem}.choice{display:flex;gap:.5rem;align-items:flex-start;margin:.35rem 0}
.choice input{width:1.4rem;height:1.4rem;margin:.1rem 0 0;flex:none}.choice label{font-weight:600;margin:0}
.has-error input,.has-error textarea{border-color:var(--error)}
.has-error{border-left:4px solid var(--error);padding-left:.75rem}
.error{color:var(--error);font-weight:700;margin:0 0 .25rem}
.error-summary{border:4px solid var(--error);background:#fff;padding:1rem;margin:0 0 1rem}
.error-summary a{color:var(--error);font-weight:600}
.notice{border:4px solid var(--ok);background:#fff;padding:.5rem 1rem;margin:0 0 1rem}
button{font:inherit;font-weight:700;padding:.65rem 1.25rem;border:0;border-radius:4px;background:var(--ok);color:#fff;cursor:pointer;min-height:44px}
button.secondary{background:#e5e7eb;color:var(--ink)}
.actions{display:flex;flex-wrap:wrap;gap:.5rem}
.signout{margin-bottom:2rem}
.file{font-weight:400;margin-top:.35rem}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:.35rem 1rem;margin:0}
.facts dt{font-weight:600}.facts dd{margin:0;overflow-wrap:anywhere}
.led{display:inline-block;width:.8rem;height:.8rem;border-radius:50%;margin-right:.3rem;vertical-align:baseline}.led.green{background:#00a33b}.led.red{background:#d4351c}
.visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
form:has(#mode-web:checked) .hub-only,form:not(:has(#mode-hub:checked)) .hub-only{display:none}
form:has(#hubKind-dps:checked) .cs-only,form:has(#hubKind-connectionString:checked) .dps-only{display:none}
form:has(#attestation-x509:checked) .sk-only,form:has(#attestation-symmetricKey:checked) .x509-only{display:none}
@media (max-width:30rem){main{padding:.75rem}.facts{grid-template-columns:1fr}.facts dd{margin-bottom:.5rem}h1{font-size:1.35rem}button{width:100%}}
`;

/** Progressive enhancement only: a chosen file fills its text box. */
export const SETUP_JS = `document.querySelectorAll('input[type=file][data-fills]').forEach(function (input) {
  input.addEventListener('change', function () {
    var f = input.files && input.files[0];
    var target = document.getElementById(input.getAttribute('data-fills'));
    if (f && target) f.text().then(function (t) { target.value = t; });
  });
});
var summary = document.getElementById('error-summary');
if (summary) summary.focus();
`;
