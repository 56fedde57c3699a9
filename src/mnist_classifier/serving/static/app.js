// The drawing page: a pad drawn with pointer events, classified live by POST /api/predict.
//
// The canvas is sent as a PNG (white ink on black, with a margin). The server finds the digit, fits it
// into 20x20 and centres it by its centre of mass in 28x28, as MNIST's digits were
// made, so a digit drawn small or off-centre still reaches the model the way it expects.
"use strict";

(() => {
  const BRUSH = 22;          // stroke width in canvas pixels (the canvas is 280x280)
  const MIN_INTERVAL = 150;  // ms between two predictions while drawing
  // What is sent: the pad scaled to 200x200 inside a black 300x300 field. The server
  // re-centres and rescales anyway; the margin keeps even a digit that fills the pad
  // under half of the image, so the server always reads it as light ink on a dark field.
  const SEND_SIDE = 300;
  const SEND_MARGIN = 50;

  const $ = (id) => document.getElementById(id);
  const pad = $("pad");
  const ctx = pad.getContext("2d");
  const dropZone = $("drop-zone");
  const padHint = $("pad-hint");
  const undoButton = $("undo");
  const clearButton = $("clear");
  const fileInput = $("file");
  const digitEl = $("digit");
  const confidenceEl = $("confidence");
  const seenEl = $("seen");
  const announceEl = $("announce");
  const errorEl = $("error");
  const barsEl = $("bars");

  let strokes = [];      // each a list of [x, y] in canvas pixels
  let current = null;    // the stroke being drawn
  let photo = null;      // an uploaded image shown on the pad (an ImageBitmap), or null

  const sendCanvasEl = document.createElement("canvas");
  sendCanvasEl.width = SEND_SIDE;
  sendCanvasEl.height = SEND_SIDE;
  const sendCtx = sendCanvasEl.getContext("2d");

  // Requests: at most one in flight; while drawing, one every MIN_INTERVAL ms at most.
  let generation = 0;    // bumped when the pad changes meaning (clear, undo, upload)
  let inFlight = false;
  let pending = false;
  let lastSent = -Infinity;
  let timer = null;

  // ----------------------------------------------------------------------- bar chart
  const bars = [];
  for (let d = 0; d < 10; d++) {
    const li = document.createElement("li");
    li.innerHTML =
      `<span class="bar-label">${d}</span>` +
      '<span class="bar-track" aria-hidden="true"><span class="bar-fill"></span></span>' +
      '<span class="bar-value">–</span>';
    barsEl.appendChild(li);
    bars.push({ li, fill: li.querySelector(".bar-fill"), value: li.querySelector(".bar-value") });
  }

  function showBars(probabilities, top) {
    bars.forEach((bar, d) => {
      const p = probabilities ? probabilities[d] : 0;
      bar.fill.style.width = `${(p * 100).toFixed(1)}%`;
      bar.value.textContent = probabilities ? `${(p * 100).toFixed(1)}%` : "–";
      bar.li.classList.toggle("top", probabilities !== null && d === top);
    });
  }

  // ----------------------------------------------------------------------- showing answers
  function showPrediction(data, announce) {
    errorEl.textContent = "";
    digitEl.textContent = String(data.digit);
    digitEl.classList.remove("pending");
    const percent = `${(data.confidence * 100).toFixed(1)}%`;
    confidenceEl.textContent = `${percent} confident`;
    seenEl.src = data.image;
    seenEl.alt = `The 28 by 28 image the model saw for the prediction ${data.digit}`;
    showBars(data.probabilities, data.digit);
    if (announce) {
      announceEl.textContent = `Prediction: ${data.digit}, ${percent} confident`;
    }
  }

  function showEmpty() {
    digitEl.textContent = "?";
    digitEl.classList.add("pending");
    confidenceEl.textContent = "no digit yet";
    seenEl.removeAttribute("src");
    seenEl.alt = "The 28 by 28 image the model saw: nothing yet";
    errorEl.textContent = "";
    showBars(null, -1);
  }

  function showError(message) {
    digitEl.textContent = "?";
    digitEl.classList.add("pending");
    confidenceEl.textContent = "no prediction";
    showBars(null, -1);
    errorEl.textContent = message;
  }

  // ----------------------------------------------------------------------- drawing
  function paintBackground() {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, pad.width, pad.height);
    if (photo) {
      const k = Math.min(pad.width / photo.width, pad.height / photo.height);
      const w = photo.width * k;
      const h = photo.height * k;
      ctx.drawImage(photo, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
    }
  }

  function strokeStyle() {
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = BRUSH;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
  }

  function drawSegment(a, b) {
    strokeStyle();
    ctx.beginPath();
    ctx.moveTo(a[0], a[1]);
    ctx.lineTo(b[0], b[1]);
    ctx.stroke();
  }

  function drawStroke(points) {
    strokeStyle();
    ctx.beginPath();
    ctx.moveTo(points[0][0], points[0][1]);
    for (const p of points) ctx.lineTo(p[0], p[1]);
    if (points.length === 1) ctx.lineTo(points[0][0] + 0.01, points[0][1]);  // a dot
    ctx.stroke();
  }

  function redraw() {
    paintBackground();
    for (const s of strokes) drawStroke(s);
    updateControls();
  }

  function updateControls() {
    const empty = strokes.length === 0 && !photo;
    undoButton.disabled = strokes.length === 0;
    clearButton.disabled = empty;
    padHint.classList.toggle("hidden", !empty);
  }

  function toCanvas(event) {
    const rect = pad.getBoundingClientRect();
    return [
      ((event.clientX - rect.left) * pad.width) / rect.width,
      ((event.clientY - rect.top) * pad.height) / rect.height,
    ];
  }

  pad.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 && event.pointerType === "mouse") return;
    event.preventDefault();
    if (photo) {           // drawing starts a new digit: the photo goes away
      photo = null;
      generation++;
      redraw();
    }
    pad.setPointerCapture(event.pointerId);
    current = [toCanvas(event)];
    strokes.push(current);
    drawStroke(current);
    updateControls();
    requestPrediction();
  });

  pad.addEventListener("pointermove", (event) => {
    if (!current) return;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const e of events.length ? events : [event]) {
      const point = toCanvas(e);
      drawSegment(current[current.length - 1], point);
      current.push(point);
    }
    requestPrediction();
  });

  function endStroke() {
    if (!current) return;
    current = null;
    requestPrediction();
  }
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);
  pad.addEventListener("lostpointercapture", endStroke);

  undoButton.addEventListener("click", () => {
    strokes.pop();
    generation++;
    redraw();
    requestPrediction();
  });

  clearButton.addEventListener("click", () => {
    strokes = [];
    photo = null;
    generation++;
    redraw();
    showEmpty();
    announceEl.textContent = "Pad cleared";
  });

  // ----------------------------------------------------------------------- predictions
  function requestPrediction() {
    pending = true;
    pump();
  }

  function pump() {
    if (inFlight || !pending) return;
    const wait = lastSent + MIN_INTERVAL - performance.now();
    if (current && wait > 0) {     // while drawing: throttle
      if (!timer) timer = setTimeout(() => { timer = null; pump(); }, wait);
      return;
    }
    pending = false;
    if (strokes.length === 0) {
      showEmpty();
      return;
    }
    sendCanvas();
  }

  async function sendCanvas() {
    const mine = generation;
    const finished = current === null;   // announce only answers for a finished stroke
    inFlight = true;
    lastSent = performance.now();
    try {
      sendCtx.fillStyle = "#000";
      sendCtx.fillRect(0, 0, SEND_SIDE, SEND_SIDE);
      const inner = SEND_SIDE - 2 * SEND_MARGIN;
      sendCtx.drawImage(pad, SEND_MARGIN, SEND_MARGIN, inner, inner);
      const blob = await new Promise((resolve) => sendCanvasEl.toBlob(resolve, "image/png"));
      const form = new FormData();
      form.append("file", blob, "drawing.png");
      const answer = await post(form);
      if (mine === generation && !photo) answer.ok ? showPrediction(answer.data, finished) : showError(answer.error);
    } finally {
      inFlight = false;
      pump();
    }
  }

  async function post(form) {
    try {
      const response = await fetch("/api/predict", { method: "POST", body: form });
      const data = await response.json().catch(() => ({}));
      if (response.ok) return { ok: true, data };
      return { ok: false, error: data.error || `The server answered ${response.status}` };
    } catch (err) {
      return { ok: false, error: "The server cannot be reached" };
    }
  }

  // ----------------------------------------------------------------------- photos
  async function classifyFile(file) {
    if (!file) return;
    strokes = [];
    current = null;
    pending = false;
    const mine = ++generation;
    try {
      photo = await createImageBitmap(file);
    } catch (err) {
      photo = null;      // the browser cannot show it; the server still decides
    }
    redraw();
    digitEl.textContent = "…";
    digitEl.classList.add("pending");
    const form = new FormData();
    form.append("file", file, file.name || "upload");
    const answer = await post(form);
    if (mine !== generation) return;
    if (answer.ok) {
      showPrediction(answer.data, true);
    } else {
      showError(answer.error);
    }
    if (!photo) updateControls();
  }

  fileInput.addEventListener("change", () => {
    classifyFile(fileInput.files[0]);
    fileInput.value = "";   // choosing the same file again classifies it again
  });

  ["dragenter", "dragover"].forEach((type) =>
    dropZone.addEventListener(type, (event) => {
      event.preventDefault();
      dropZone.classList.add("dragging");
    }),
  );
  ["dragleave", "dragend"].forEach((type) =>
    dropZone.addEventListener(type, () => dropZone.classList.remove("dragging")),
  );
  dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    dropZone.classList.remove("dragging");
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) classifyFile(file);
  });
  // A file dropped anywhere else must not make the browser leave the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  // ----------------------------------------------------------------------- model details
  async function loadModelInfo() {
    const info = $("model-info");
    try {
      const response = await fetch("/api/model");
      const model = await response.json();
      const parts = [`Model ${model.model}`];
      if (model.parameters) parts.push(`${model.parameters.toLocaleString("en-US")} parameters`);
      const accuracy = model.metrics && model.metrics.test_accuracy;
      if (typeof accuracy === "number") parts.push(`${(accuracy * 100).toFixed(2)}% test accuracy`);
      info.textContent = parts.join(" · ");
    } catch (err) {
      info.textContent = "The server cannot be reached";
    }
  }

  redraw();
  showEmpty();
  loadModelInfo();
})();
