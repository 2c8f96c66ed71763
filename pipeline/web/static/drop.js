// hushdrop: the drop page — choose or drop files, preview them in the browser, upload them,
// record from the microphone, and watch the queue.
"use strict";

(() => {
  const { t, el } = HD;
  const profiles = JSON.parse(HD.data.profiles || "[]");
  const maxBytes = Number(HD.data.maxBytes || 0);
  const previewLimit = Number(HD.data.previewLimit || 0);
  const byName = Object.fromEntries(profiles.map((p) => [p.name, p]));

  // -- language menus follow the chosen profile ----------------------------------------------

  function bindProfile(profileSelect, languageSelect) {
    const refresh = (keep) => HD.fillLanguages(languageSelect, byName[profileSelect.value] || profiles[0], keep);
    profileSelect.addEventListener("change", () => refresh(true));
    refresh(false);
  }
  const defaultProfile = document.getElementById("default-profile");
  const defaultLanguage = document.getElementById("default-language");
  bindProfile(defaultProfile, defaultLanguage);

  // -- facts from a file's own header (the browser resamples when it decodes) ----------------

  function headerFacts(bytes) {
    const b = new Uint8Array(bytes, 0, Math.min(bytes.byteLength, 1 << 16));
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const text = (at, n) => String.fromCharCode(...b.subarray(at, at + n));
    try {
      if (text(0, 4) === "RIFF" && text(8, 4) === "WAVE") {
        for (let at = 12; at + 8 <= b.length;) {
          const id = text(at, 4), n = dv.getUint32(at + 4, true);
          if (id === "fmt ") return { channels: dv.getUint16(at + 10, true), rate: dv.getUint32(at + 12, true) };
          at += 8 + n + (n % 2);
        }
      }
      if (text(0, 4) === "fLaC") {
        const s = 8;
        return { rate: (b[s + 10] << 12) | (b[s + 11] << 4) | (b[s + 12] >> 4), channels: ((b[s + 12] >> 1) & 7) + 1 };
      }
      for (let at = 0; at + 20 < b.length; at++) {
        if (b[at] === 0x4f && text(at, 8) === "OpusHead") return { channels: b[at + 9], rate: dv.getUint32(at + 12, true) };
        if (b[at] === 0x01 && text(at + 1, 6) === "vorbis") return { channels: b[at + 11], rate: dv.getUint32(at + 12, true) };
      }
      let at = 0;
      if (text(0, 3) === "ID3") at = 10 + ((b[6] << 21) | (b[7] << 14) | (b[8] << 7) | b[9]);
      for (; at + 4 < b.length; at++) {
        if (b[at] === 0xff && (b[at + 1] & 0xe0) === 0xe0 && ((b[at + 1] >> 1) & 3) !== 0) {
          const version = (b[at + 1] >> 3) & 3, index = (b[at + 2] >> 2) & 3;
          if (index === 3 || version === 1) continue;
          const base = [11025, 0, 22050, 44100][version] * [1, 1.0884353741496597, 0.7256235827664399][index];
          return { rate: Math.round(base), channels: (b[at + 3] >> 6) === 3 ? 1 : 2 };
        }
      }
    } catch (e) { /* an odd header: the decoder's view will do */ }
    return null;
  }

  async function decode(bytes) {
    const context = new (window.AudioContext || window.webkitAudioContext)();
    try {
      return await context.decodeAudioData(bytes);
    } finally {
      context.close();
    }
  }

  function factsLine(duration, rate, channels, size, decodedRate) {
    const parts = [t("duration") + " " + HD.hundredths(duration)];
    if (rate) parts.push(t("sample_rate") + " " + rate + " Hz");
    else if (decodedRate) parts.push(t("sample_rate") + " ~" + decodedRate + " Hz");
    if (channels) parts.push(t("channels") + " " + channels);
    parts.push(t("size") + " " + HD.size(size));
    return parts.join(" · ");
  }

  // -- uploads ---------------------------------------------------------------------------

  function upload(blob, name, profile, language, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      const query = new URLSearchParams({ profile, name, language: language || "" });
      xhr.open("POST", "/api/uploads?" + query.toString());
      xhr.setRequestHeader("X-CSRF-Token", HD.data.csrf);
      xhr.setRequestHeader("Content-Type", blob.type || "application/octet-stream");
      xhr.upload.onprogress = (e) => { if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total); };
      xhr.onload = () => {
        let payload = null;
        try { payload = JSON.parse(xhr.responseText); } catch (e) { payload = null; }
        if (xhr.status >= 200 && xhr.status < 300) resolve(payload);
        else reject(new Error((payload && payload.error) || xhr.statusText || String(xhr.status)));
      };
      xhr.onerror = () => reject(new Error("network error"));
      xhr.send(blob);
    });
  }

  // -- chosen files ------------------------------------------------------------------------

  const list = document.getElementById("chosen");
  const uploadButton = document.getElementById("upload");
  const clearButton = document.getElementById("clear");
  const items = [];

  function refreshButtons() {
    uploadButton.disabled = !items.some((i) => i.state === "ready");
    clearButton.disabled = items.length === 0;
  }

  function addFile(file) {
    const item = { file, state: "ready" };
    const profile = el("select", { class: "profile" }, profiles.map((p) => el("option", { value: p.name, text: p.name })));
    profile.value = defaultProfile.value;
    const language = el("select", { class: "language" });
    bindProfile(profile, language);
    language.value = defaultLanguage.value;
    const canvas = el("canvas", { class: "wave", height: "64" });
    const facts = el("p", { class: "facts mono", text: t("decoding") });
    const bar = el("div");
    const status = el("p", { class: "status" });
    const remove = el("button", { type: "button", class: "small", text: t("remove"), onclick: () => {
      items.splice(items.indexOf(item), 1);
      item.li.remove();
      refreshButtons();
    } });
    item.li = el("li", { "data-name": file.name }, [
      el("div", { class: "file-head" }, [el("strong", { text: file.name }), remove]),
      canvas, facts,
      el("div", { class: "row" }, [
        el("label", {}, [t("profile") + " ", profile]),
        el("label", {}, [t("language") + " ", language]),
      ]),
      el("div", { class: "bar" }, [bar]), status,
    ]);
    Object.assign(item, { profile, language, canvas, facts, bar, status, remove });
    list.append(item.li);
    items.push(item);
    refreshButtons();
    if (maxBytes && file.size > maxBytes) {
      item.state = "refused";
      status.textContent = t("upload_failed", { reason: HD.size(file.size) + " > " + HD.size(maxBytes) });
      facts.textContent = factsLine(0, 0, 0, file.size);
      refreshButtons();
      return;
    }
    preview(item);
  }

  async function preview(item) {
    const { file, canvas, facts } = item;
    Wave.draw(canvas, null, {});
    if (file.size > previewLimit) {
      facts.textContent = t("size") + " " + HD.size(file.size) + " · " + t("too_big_preview");
      return;
    }
    try {
      const bytes = await file.arrayBuffer();
      const header = headerFacts(bytes);
      const buffer = await decode(bytes);
      item.peaks = Wave.fromBuffer(buffer, 1200);
      item.duration = buffer.duration;
      Wave.draw(canvas, item.peaks, { duration: buffer.duration });
      facts.textContent = factsLine(buffer.duration, header && header.rate, (header && header.channels) || buffer.numberOfChannels,
        file.size, header ? null : buffer.sampleRate);
      facts.dataset.duration = buffer.duration.toFixed(2);
    } catch (e) {
      facts.textContent = t("size") + " " + HD.size(file.size) + " · " + t("no_preview");
    }
  }

  async function uploadAll() {
    uploadButton.disabled = true;
    for (const item of items) {
      if (item.state !== "ready") continue;
      item.state = "uploading";
      item.remove.disabled = true;
      item.status.textContent = t("uploading", { percent: 0 });
      try {
        const result = await upload(item.file, item.file.name, item.profile.value, item.language.value, (fraction) => {
          item.bar.style.width = (fraction * 100).toFixed(1) + "%";
          item.status.textContent = t("uploading", { percent: Math.round(fraction * 100) });
        });
        item.state = "uploaded";
        item.bar.style.width = "100%";
        item.status.textContent = t("uploaded") + " (" + result.name + ")";
        item.remove.disabled = false;
        pollSoon();
      } catch (e) {
        item.state = "ready";
        item.remove.disabled = false;
        item.status.textContent = t("upload_failed", { reason: e.message });
      }
    }
    refreshButtons();
  }

  const input = document.getElementById("files");
  input.addEventListener("change", () => { for (const file of input.files) addFile(file); input.value = ""; });
  uploadButton.addEventListener("click", uploadAll);
  clearButton.addEventListener("click", () => {
    for (const item of items.filter((i) => i.state !== "uploading")) { item.li.remove(); items.splice(items.indexOf(item), 1); }
    refreshButtons();
  });
  const zone = document.getElementById("dropzone");
  for (const name of ["dragenter", "dragover"]) zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.add("over"); });
  for (const name of ["dragleave", "drop"]) zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.remove("over"); });
  zone.addEventListener("drop", (e) => { for (const file of e.dataTransfer.files) addFile(file); });

  // -- recording -------------------------------------------------------------------------------

  const rec = {};
  const recButton = document.getElementById("rec");
  const recLabel = document.getElementById("rec-label");
  const recTime = document.getElementById("rec-time");
  const recStatus = document.getElementById("rec-status");
  const level = document.getElementById("level");
  const take = document.getElementById("take");
  const takeWave = document.getElementById("take-wave");
  const takeFacts = document.getElementById("take-facts");
  const takePlay = document.getElementById("take-play");
  const takeStatus = document.getElementById("take-status");
  bindProfile(document.getElementById("take-profile"), document.getElementById("take-language"));

  const canRecord = window.isSecureContext && navigator.mediaDevices && navigator.mediaDevices.getUserMedia;
  if (!window.isSecureContext) document.getElementById("mic-insecure").hidden = false;
  else if (!canRecord || !window.MediaRecorder) document.getElementById("mic-unsupported").hidden = false;
  else document.getElementById("recorder").hidden = false;

  function meter() {
    if (!rec.analyser) return;
    const samples = new Float32Array(rec.analyser.fftSize);
    rec.analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const v of samples) sum += v * v;
    const db = 10 * Math.log10(sum / samples.length + 1e-12);
    level.style.width = Math.min(100, Math.max(0, ((db + 60) / 60) * 100)).toFixed(0) + "%";
    recTime.textContent = HD.clock((performance.now() - rec.started) / 1000).slice(3);
    rec.frame = requestAnimationFrame(meter);
  }

  async function startRecording() {
    discardTake();
    try {
      rec.stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (e) {
      recStatus.textContent = t("mic_denied", { reason: e.message || e.name });
      return;
    }
    const types = ["audio/webm;codecs=opus", "audio/webm", "audio/ogg;codecs=opus", "audio/mp4"];
    const mime = types.find((type) => MediaRecorder.isTypeSupported(type)) || "";
    rec.recorder = new MediaRecorder(rec.stream, mime ? { mimeType: mime } : undefined);
    rec.chunks = [];
    rec.recorder.ondataavailable = (e) => { if (e.data && e.data.size) rec.chunks.push(e.data); };
    rec.recorder.onstop = finishRecording;
    rec.context = new AudioContext();
    rec.analyser = rec.context.createAnalyser();
    rec.analyser.fftSize = 2048;
    rec.context.createMediaStreamSource(rec.stream).connect(rec.analyser);
    rec.started = performance.now();
    rec.recorder.start(250);
    recButton.classList.add("on");
    recLabel.textContent = t("stop");
    recStatus.textContent = t("recording");
    meter();
  }

  function stopRecording() {
    if (rec.recorder && rec.recorder.state !== "inactive") rec.recorder.stop();
    if (rec.stream) for (const track of rec.stream.getTracks()) track.stop();
    cancelAnimationFrame(rec.frame);
    rec.analyser = null;
    if (rec.context) rec.context.close();
    recButton.classList.remove("on");
    recLabel.textContent = t("record");
    level.style.width = "0";
  }

  async function finishRecording() {
    const type = (rec.recorder && rec.recorder.mimeType) || "audio/webm";
    rec.blob = new Blob(rec.chunks, { type });
    rec.extension = type.includes("ogg") ? "ogg" : type.includes("mp4") ? "m4a" : "webm";
    recStatus.textContent = "";
    take.hidden = false;
    try {
      rec.buffer = await decode(await rec.blob.arrayBuffer());
      rec.peaks = Wave.fromBuffer(rec.buffer, 1200);
      Wave.draw(takeWave, rec.peaks, { duration: rec.buffer.duration });
      takeFacts.textContent = factsLine(rec.buffer.duration, rec.buffer.sampleRate, rec.buffer.numberOfChannels, rec.blob.size);
      takeFacts.dataset.duration = rec.buffer.duration.toFixed(2);
    } catch (e) {
      takeFacts.textContent = t("size") + " " + HD.size(rec.blob.size) + " · " + t("no_preview");
    }
  }

  function stopPlayback() {
    if (rec.source) { rec.source.onended = null; try { rec.source.stop(); } catch (e) { /* already */ } }
    if (rec.playContext) rec.playContext.close();
    rec.source = rec.playContext = null;
    cancelAnimationFrame(rec.playFrame);
    takePlay.textContent = t("play");
    if (rec.peaks) Wave.draw(takeWave, rec.peaks, { duration: rec.buffer.duration });
  }

  function play() {
    if (rec.source) { stopPlayback(); return; }
    if (!rec.buffer) return;
    rec.playContext = new AudioContext();
    rec.source = rec.playContext.createBufferSource();
    rec.source.buffer = rec.buffer;
    rec.source.connect(rec.playContext.destination);
    rec.source.onended = stopPlayback;
    const begun = rec.playContext.currentTime;
    rec.source.start();
    takePlay.textContent = t("pause");
    const step = () => {
      if (!rec.playContext) return;
      Wave.draw(takeWave, rec.peaks, { duration: rec.buffer.duration, playhead: rec.playContext.currentTime - begun });
      rec.playFrame = requestAnimationFrame(step);
    };
    step();
  }

  function discardTake() {
    stopPlayback();
    Object.assign(rec, { blob: null, buffer: null, peaks: null });
    take.hidden = true;
    takeStatus.textContent = "";
    recTime.textContent = "00:00";
  }

  async function sendTake() {
    if (!rec.blob) return;
    stopPlayback();
    const now = new Date();
    const two = (n) => String(n).padStart(2, "0");
    const stamp = now.getFullYear() + two(now.getMonth() + 1) + two(now.getDate()) + "-" +
      two(now.getHours()) + two(now.getMinutes()) + two(now.getSeconds());
    const send = document.getElementById("take-send");
    send.disabled = true;
    try {
      const result = await upload(rec.blob, "recording-" + stamp + "." + rec.extension,
        document.getElementById("take-profile").value, document.getElementById("take-language").value,
        (fraction) => { takeStatus.textContent = t("uploading", { percent: Math.round(fraction * 100) }); });
      takeStatus.textContent = t("uploaded") + " (" + result.name + ")";
      rec.blob = null;
      pollSoon();
    } catch (e) {
      takeStatus.textContent = t("upload_failed", { reason: e.message });
    } finally {
      send.disabled = false;
    }
  }

  if (recButton) {
    recButton.addEventListener("click", () => (rec.recorder && rec.recorder.state === "recording" ? stopRecording() : startRecording()));
    takePlay.addEventListener("click", play);
    document.getElementById("take-discard").addEventListener("click", discardTake);
    document.getElementById("take-send").addEventListener("click", sendTake);
  }

  // -- the queue ---------------------------------------------------------------------------

  const body = document.querySelector("#queue tbody");
  const empty = document.getElementById("queue-empty");
  const openNotes = new Set();
  let timer = null;

  function timeText(job) {
    if (job.state === "processing") {
      let text = t("elapsed", { elapsed: HD.span(job.elapsed_s) });
      if (job.remaining_s !== undefined && job.remaining_s !== null) text += " · " + t("expected", { remaining: HD.span(job.remaining_s) });
      return text;
    }
    if (job.state === "done" && job.elapsed_s !== undefined) return t("took", { elapsed: HD.span(job.elapsed_s) });
    if (job.elapsed_s !== undefined && ["uploaded", "seen", "claimed", "failed"].includes(job.state)) return t("elapsed", { elapsed: HD.span(job.elapsed_s) });
    return job.finished_at ? new Date(job.finished_at * 1000).toLocaleString() : "";
  }

  async function act(job, action) {
    if (action === "delete" && !confirm(t("confirm_delete"))) return;
    try {
      await HD.api("POST", "/api/jobs/" + job.id + "/" + action);
    } catch (e) {
      alert(e.message);
    }
    pollSoon();
  }

  function row(job) {
    const name = el("td", { class: "name" }, [
      job.id && job.done ? el("a", { href: job.url, text: job.name }) : el("span", { text: job.name }),
    ]);
    if (job.language) name.append(" ", el("span", { class: "badge", text: job.language }));
    if (job.error) {
      const details = el("details", {}, [el("summary", { text: t("error_details") }), el("pre", { text: job.error })]);
      details.open = openNotes.has(job.key);
      details.addEventListener("toggle", () => (details.open ? openNotes.add(job.key) : openNotes.delete(job.key)));
      name.append(details);
    }
    const state = el("td", {}, [el("span", { class: "badge state-" + job.state, text: t("state_" + job.state) })]);
    if (job.state === "processing" && job.stage) state.append(el("div", { class: "stage", text: job.stage }));
    if (job.state === "failed" && job.next_attempt_at) {
      state.append(el("div", { class: "stage", text: t("next_try", { when: new Date(job.next_attempt_at * 1000).toLocaleTimeString() }) }));
    }
    const progress = el("td", { class: "progress" });
    if (job.state === "processing" || job.state === "done" || job.state === "committed") {
      const fraction = job.state === "processing" ? job.stage_progress || 0 : 1;
      const fill = el("div");
      fill.style.width = (fraction * 100).toFixed(1) + "%";
      progress.append(el("span", { class: "mono", text: Math.round(fraction * 100) + "%" }), el("div", { class: "bar" }, [fill]));
    }
    const actions = el("td", { class: "actions-cell" });
    if (job.done) actions.append(el("a", { class: "button small", href: job.url, text: t("view") }));
    if (job.can_retry) actions.append(el("button", { type: "button", class: "small", text: t("retry"), onclick: () => act(job, "retry") }));
    if (job.can_delete) actions.append(el("button", { type: "button", class: "small danger", text: t("delete"), onclick: () => act(job, "delete") }));
    return el("tr", { "data-key": job.key, "data-state": job.state, "data-name": job.name,
      "data-progress": job.stage_progress !== undefined ? String(job.stage_progress) : null }, [
      name, el("td", { text: job.profile }), state, progress, el("td", { class: "time", text: timeText(job) }), actions,
    ]);
  }

  async function poll() {
    clearTimeout(timer);
    let busy = false;
    try {
      const { jobs } = await HD.api("GET", "/api/jobs");
      body.replaceChildren(...jobs.map(row));
      empty.hidden = jobs.length > 0;
      document.getElementById("queue").hidden = jobs.length === 0;
      busy = jobs.some((j) => ["uploaded", "seen", "claimed", "processing", "committed", "failed"].includes(j.state));
    } catch (e) {
      if (e.status === 401) { location.href = "/login"; return; }
    }
    timer = setTimeout(poll, busy ? 1000 : 4000);
  }

  function pollSoon() { clearTimeout(timer); timer = setTimeout(poll, 200); }

  poll();
})();
