// qr.js — a QR code drawn in the page as SVG (no image URL, no network): the two-factor setup's
// `otpauth://` URL holds the TOTP secret, which must not go to any third-party QR service.
// The encoding is done by the vendored qrcode-generator (vendor/, MIT).

import qrcode from './vendor/qrcode-generator.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
/** The quiet zone the QR standard asks for around the code, in modules. */
const QUIET_ZONE = 4;

/**
 * An `<svg>` of `text` as a QR code (byte mode, error correction M, the smallest version that
 * fits). Dark modules are one `<path>`; `data-modules` says the code's size.
 */
export function qrSvg(text, { size = 200, label = 'QR code' } = {}) {
  const code = qrcode(0, 'M');
  code.addData(text, 'Byte');
  code.make();
  const n = code.getModuleCount();
  const total = n + 2 * QUIET_ZONE;
  let d = '';
  for (let row = 0; row < n; row++) {
    for (let col = 0; col < n; col++) {
      if (code.isDark(row, col)) d += `M${col + QUIET_ZONE} ${row + QUIET_ZONE}h1v1h-1z`;
    }
  }
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${total} ${total}`);
  svg.setAttribute('width', String(size));
  svg.setAttribute('height', String(size));
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  svg.setAttribute('shape-rendering', 'crispEdges');
  svg.dataset.modules = String(n);
  svg.classList.add('qr');
  const bg = document.createElementNS(SVG_NS, 'rect');
  bg.setAttribute('width', String(total));
  bg.setAttribute('height', String(total));
  bg.setAttribute('fill', '#fff');
  const path = document.createElementNS(SVG_NS, 'path');
  path.setAttribute('d', d);
  path.setAttribute('fill', '#000');
  svg.append(bg, path);
  return svg;
}
