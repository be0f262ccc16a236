// p3m web page: plain JavaScript, no build step, talks only to this server's /v1 API.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const state = {
    file: null,
    stem: "photo",
    maxUpload: 0,
    mattingReady: false,
    busy: false,
    cutout: null, // HTMLImageElement of the straight-RGBA cutout
    outputs: [], // the output kinds /v1/matte takes (GET /v1/models)
    background: "#ffffff",
    urls: {},
    timer: null,
  };

  // ------------------------------------------------------------------ helpers
  function setUrl(key, blob) {
    if (state.urls[key]) URL.revokeObjectURL(state.urls[key]);
    state.urls[key] = URL.createObjectURL(blob);
    return state.urls[key];
  }

  function formatBytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
    return `${(n / 1024 / 1024).toFixed(1)} MB`;
  }

  function showError(message, code) {
    const box = $("error");
    box.textContent = message;
    if (code) {
      const c = document.createElement("code");
      c.textContent = ` (${code})`;
      box.appendChild(c);
    }
    box.hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
    $("error").textContent = "";
  }

  function showNotice(message) {
    $("notice").textContent = message;
    $("notice").hidden = !message;
  }

  function progress(text, fraction) {
    const wrap = $("progress");
    wrap.hidden = false;
    $("status").textContent = text;
    if (fraction === null) {
      wrap.classList.add("busy");
    } else {
      wrap.classList.remove("busy");
      $("progress-bar").style.width = `${Math.round(fraction * 100)}%`;
    }
  }

  function startTimer(label) {
    const t0 = performance.now();
    stopTimer();
    state.timer = setInterval(() => {
      progress(`${label}… ${((performance.now() - t0) / 1000).toFixed(1)} s`, null);
    }, 100);
    return t0;
  }

  function stopTimer() {
    if (state.timer) clearInterval(state.timer);
    state.timer = null;
  }

  function setBusy(busy) {
    state.busy = busy;
    $("run-matte").disabled = busy || !state.file || !state.mattingReady;
    $("run-fg").disabled = busy || !state.file || !state.mattingReady;
    $("run-anon").disabled = busy || !state.file;
  }

  function loading(frameChild, on) {
    $(frameChild).parentElement.classList.toggle("loading", on);
  }

  function loadImage(url) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error("the browser could not display the result"));
      img.src = url;
    });
  }

  function canvasBlob(canvas) {
    return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  }

  // POST a form with upload progress; resolves {status, blob, retryAfter} whatever the status.
  function post(url, form, label) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.responseType = "blob";
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) progress(`Uploading… ${Math.round((100 * e.loaded) / e.total)}%`, e.loaded / e.total);
      };
      xhr.upload.onload = () => startTimer(label);
      xhr.onload = () => resolve({ status: xhr.status, blob: xhr.response, retryAfter: xhr.getResponseHeader("Retry-After"),
                                   warning: xhr.getResponseHeader("X-P3M-Warning") });
      xhr.onerror = () => reject(new Error("the server could not be reached; is `p3m serve` still running?"));
      xhr.send(form);
    });
  }

  async function apiError(resp) {
    try {
      const body = JSON.parse(await resp.blob.text());
      if (body && body.error) {
        // the server names the upload "image"; the user knows it by its file name
        let message = body.error.message.replace(/^image: /, `${state.file?.name || "image"}: `);
        if (resp.status === 503 && resp.retryAfter) message += ` — try again in ${resp.retryAfter} s`;
        return { message, code: body.error.code };
      }
    } catch (_) { /* not JSON */ }
    return { message: `the server answered HTTP ${resp.status}`, code: `http_${resp.status}` };
  }

  // ------------------------------------------------------------------ server status
  async function loadStatus() {
    const pill = $("model-pill");
    try {
      const [health, models] = await Promise.all([
        fetch("/v1/health").then((r) => r.json()),
        fetch("/v1/models").then((r) => r.json()),
      ]);
      state.maxUpload = health.limits.max_upload_bytes;
      state.mattingReady = health.matting.ready;
      state.outputs = models.outputs || [];
      $("limits").textContent =
        `up to ${formatBytes(health.limits.max_upload_bytes)} · ${(health.limits.max_pixels / 1e6).toFixed(0)} megapixels`;
      if (models.loaded) {
        const loaded = models.loaded;
        pill.textContent = `${loaded.name} · ${loaded.device}`;
        pill.title = loaded.route
          ? `built-in route: segmentation prior + closed-form matting (${loaded.weights})`
          : `${loaded.arch}, weights ${loaded.weights}, ${loaded.precision}, default strategy ${loaded.strategy}`;
        pill.className = loaded.warning ? "pill pill-warn" : "pill pill-ok";
        if (loaded.warning) showNotice(`Model warning: ${loaded.warning}`);
        $("strategy").value = loaded.strategy;
        // the built-in route matts the whole image at once: P3M-Net's test strategies do not apply
        $("strategy").disabled = Boolean(loaded.route);
        if (loaded.route) $("strategy").title = "the built-in portrait-cf route has no test strategy";
      } else {
        pill.textContent = "no weights: anonymisation only";
        pill.className = "pill pill-warn";
        showNotice(`Matting is unavailable: ${health.matting.message}`);
      }
    } catch (err) {
      pill.textContent = "server unreachable";
      pill.className = "pill pill-bad";
      showError("Cannot reach the p3m server; reload the page once it runs.");
    }
    setBusy(false);
  }

  // ------------------------------------------------------------------ choosing a photo
  function pickFile(file) {
    if (!file || state.busy) return;
    clearError();
    if (state.maxUpload && file.size > state.maxUpload) {
      showError(`${file.name} is ${formatBytes(file.size)}, over the limit of ${formatBytes(state.maxUpload)}.`, "upload_too_large");
      return;
    }
    state.file = file;
    state.stem = (file.name || "photo").replace(/\.[^.]+$/, "") || "photo";
    state.cutout = null;
    const url = setUrl("original", file);
    $("thumb").src = url;
    $("img-original").src = url;
    $("img-original").onload = () => {
      const img = $("img-original");
      $("file-meta").textContent = `${img.naturalWidth} × ${img.naturalHeight} · ${formatBytes(file.size)}`;
    };
    $("img-original").hidden = false;
    $("thumb").hidden = false;
    $("img-original").onerror = () => {
      // the browser cannot show it (e.g. TIFF, or not an image at all); the server decides by decoding it
      $("img-original").hidden = true;
      $("thumb").hidden = true;
      $("file-meta").textContent = `${formatBytes(file.size)} · no preview`;
    };
    $("file-name").textContent = file.name || "pasted image";
    $("file-meta").textContent = formatBytes(file.size);
    $("file-info").hidden = false;
    $("empty-state").hidden = true;
    $("result-grid").hidden = false;
    for (const id of ["img-alpha", "img-cutout", "img-fg", "img-composite", "img-anon"]) $(id).removeAttribute("src");
    for (const id of ["dl-alpha", "dl-cutout", "dl-fg", "dl-composite", "dl-anon"]) $(id).hidden = true;
    $("anon-card").hidden = true;
    $("face-boxes").replaceChildren();
    document.querySelectorAll(".matte-card").forEach((card) => { card.hidden = !state.mattingReady; });
    // alpha, cutout and composite come from one rgba answer; any other kind the API offers is asked for
    $("fg-card").hidden = !state.mattingReady || !state.outputs.includes("fg");
    $("run-fg").hidden = false;
    setBusy(false);
    if (state.mattingReady) runMatte();
  }

  // ------------------------------------------------------------------ matting
  async function renderAlpha(cutout) {
    const canvas = document.createElement("canvas");
    canvas.width = cutout.naturalWidth;
    canvas.height = cutout.naturalHeight;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(cutout, 0, 0);
    const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const d = pixels.data;
    for (let i = 0; i < d.length; i += 4) {
      const a = d[i + 3];
      d[i] = a; d[i + 1] = a; d[i + 2] = a; d[i + 3] = 255;
    }
    ctx.putImageData(pixels, 0, 0);
    const url = setUrl("alpha", await canvasBlob(canvas));
    $("img-alpha").src = url;
    $("dl-alpha").href = url;
    $("dl-alpha").download = `${state.stem}_alpha.png`;
    $("dl-alpha").hidden = false;
  }

  async function renderComposite() {
    if (!state.cutout) return;
    const cutout = state.cutout;
    const color = state.background;
    const canvas = document.createElement("canvas");
    canvas.width = cutout.naturalWidth;
    canvas.height = cutout.naturalHeight;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = color;
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(cutout, 0, 0); // straight alpha "over": F·α + B·(1 − α)
    const blob = await canvasBlob(canvas);
    if (color !== state.background || cutout !== state.cutout) return; // a newer render is on its way
    const url = setUrl("composite", blob);
    $("img-composite").src = url;
    $("dl-composite").href = url;
    $("dl-composite").download = `${state.stem}_composite.png`;
    $("dl-composite").dataset.background = color;
    $("dl-composite").hidden = false;
  }

  // POST the photo with `fields` to `url`, showing progress; `show(resp)` takes a 200 answer. Errors are shown on
  // the page under `what`; `frames` spin meanwhile.
  async function request(url, fields, label, what, frames, show) {
    clearError();
    setBusy(true);
    for (const id of frames) loading(id, true);
    const form = new FormData();
    form.append("image", state.file, "upload");
    for (const [key, value] of Object.entries(fields)) form.append(key, value);
    const t0 = performance.now();
    try {
      progress("Uploading… 0%", 0);
      const resp = await post(url, form, label);
      stopTimer();
      if (resp.status !== 200) {
        const err = await apiError(resp);
        showError(`${what} failed: ${err.message}`, err.code);
        progress("Failed", 0);
        return;
      }
      await show(resp);
      progress(`Done in ${((performance.now() - t0) / 1000).toFixed(1)} s`, 1);
    } catch (err) {
      stopTimer();
      showError(err.message, "network");
      progress("Failed", 0);
    } finally {
      for (const id of frames) loading(id, false);
      setBusy(false);
    }
  }

  // POST the photo to /v1/matte for one output kind (`request`)
  async function matteRequest(output, label, what, frames, show) {
    if (!state.file || state.busy || !state.mattingReady) return;
    await request("/v1/matte", { output, strategy: $("strategy").value }, label, what, frames, show);
  }

  function runMatte() {
    if (!state.file || state.busy || !state.mattingReady) return;
    $("img-fg").removeAttribute("src"); // a new matte (another strategy, say): the old colours no longer apply
    $("dl-fg").hidden = true;
    $("run-fg").hidden = false;
    return matteRequest("rgba", "Matting on the server", "Matting", ["img-alpha", "img-cutout", "img-composite"],
      async (resp) => {
        const url = setUrl("cutout", resp.blob);
        state.cutout = await loadImage(url);
        $("img-cutout").src = url;
        $("dl-cutout").href = url;
        $("dl-cutout").download = `${state.stem}_rgba.png`;
        $("dl-cutout").hidden = false;
        await renderAlpha(state.cutout);
        await renderComposite();
        if (resp.warning) showNotice(`Matting warning: ${resp.warning}`);
      });
  }

  // The foreground colours, exactly as the server estimated them: a canvas would lose them where alpha is 0
  // (browsers store canvas pixels premultiplied), so they are a second request, made when asked for.
  function runForeground() {
    return matteRequest("fg", "Estimating the foreground colours", "Foreground", ["img-fg"], async (resp) => {
      const url = setUrl("fg", resp.blob);
      $("img-fg").src = url;
      $("dl-fg").href = url;
      $("dl-fg").download = `${state.stem}_fg.png`;
      $("dl-fg").hidden = false;
      $("run-fg").hidden = true;
    });
  }

  // ------------------------------------------------------------------ anonymisation
  function drawFaces(faces, width, height) {
    const layer = $("face-boxes");
    layer.replaceChildren();
    faces.forEach((face, i) => {
      const [x0, y0, x1, y1] = face.box;
      const box = document.createElement("div");
      box.className = "face-box";
      box.style.left = `${(100 * x0) / width}%`;
      box.style.top = `${(100 * y0) / height}%`;
      box.style.width = `${(100 * (x1 - x0)) / width}%`;
      box.style.height = `${(100 * (y1 - y0)) / height}%`;
      const tag = document.createElement("span");
      tag.textContent = `face ${i + 1} · ${Math.round(face.score * 100)}%`;
      box.appendChild(tag);
      layer.appendChild(box);
    });
  }

  async function runAnon() {
    if (!state.file || state.busy) return;
    $("anon-card").hidden = false;
    const fields = { method: $("anon-method").value, response: "json" };
    const label = "Finding and obfuscating faces";
    await request("/v1/anonymize", fields, label, "Anonymisation", ["img-anon"], async (resp) => {
      const body = JSON.parse(await resp.blob.text());
      const bytes = Uint8Array.from(atob(body.image.base64), (c) => c.charCodeAt(0));
      const url = setUrl("anon", new Blob([bytes], { type: body.image.content_type }));
      $("img-anon").src = url;
      drawFaces(body.faces, body.width, body.height);
      $("dl-anon").href = url;
      $("dl-anon").download = `${state.stem}_anonymized.png`;
      $("dl-anon").hidden = false;
      const n = body.faces.length;
      $("anon-summary").textContent = n ? `${n} face${n > 1 ? "s" : ""} obfuscated` : "no face found";
      if (!n) showNotice("No face was found: the image is unchanged. Check it by hand before sharing it.");
    });
  }

  // ------------------------------------------------------------------ wiring
  function setBackground(color) {
    state.background = color;
    $("composite-frame").style.setProperty("--composite", color);
    $("bg-color").value = color;
    document.querySelectorAll(".swatch").forEach((s) => s.classList.toggle("active", s.dataset.color === color));
    renderComposite();
  }

  document.querySelectorAll(".swatch").forEach((s) => {
    s.style.setProperty("--c", s.dataset.color);
    s.addEventListener("click", () => setBackground(s.dataset.color));
  });
  $("bg-color").addEventListener("input", (e) => setBackground(e.target.value));
  $("file-input").addEventListener("change", (e) => {
    pickFile(e.target.files[0]);
    e.target.value = ""; // choosing the same file again re-runs
  });
  $("run-matte").addEventListener("click", runMatte);
  $("run-anon").addEventListener("click", runAnon);
  $("run-fg").addEventListener("click", runForeground);

  const zone = $("drop-zone");
  zone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file-input").click(); }
  });
  ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => {
    e.preventDefault();
    zone.classList.add("dragging");
  }));
  ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, () => zone.classList.remove("dragging")));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    pickFile(e.dataTransfer.files[0]);
  });
  // a photo dropped anywhere else must not navigate away from the page
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData?.items || [])].find((i) => i.type.startsWith("image/"));
    if (item) pickFile(item.getAsFile());
  });

  loadStatus();
})();
