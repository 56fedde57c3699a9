// ReDoc for /redoc, started from a file (the page's CSP allows no inline script).
// ReDoc writes its styles into <style> elements: they carry this page's style nonce, which
// the server put on this script element (the page's CSP allows styles with that nonce only).
"use strict";
(() => {
  const nonce = document.currentScript ? document.currentScript.nonce : "";
  Redoc.init("openapi.json", { nonce, hideDownloadButton: false }, document.getElementById("redoc"));
})();
