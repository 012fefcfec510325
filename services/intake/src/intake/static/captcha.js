// Gives the vendored ALTCHA widget (the "external" build, which bundles no worker) its
// proof-of-work worker as a file of this site: no blob: or data: worker, so the pages'
// Content-Security-Policy (script-src 'self', which workers fall back to) allows it.
// A module script: it runs after /static/altcha/altcha.min.js has defined $altcha.
"use strict";

const pbkdf2 = () => new Worker("/static/altcha/pbkdf2.js");
for (const algorithm of ["PBKDF2/SHA-256", "PBKDF2/SHA-384", "PBKDF2/SHA-512"]) {
  globalThis.$altcha.algorithms.set(algorithm, pbkdf2);
}
