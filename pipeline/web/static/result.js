// hushdrop: a result page — waveform with segments, seeking, editing, copying, retry and delete.
"use strict";

(() => {
  const { t } = HD;
  const jobId = HD.data.job;

  // retry / delete on a page of a quarantined job
  for (const button of document.querySelectorAll("button.act")) {
    button.addEventListener("click", async () => {
      if (button.dataset.act === "delete" && !confirm(t("confirm_delete"))) return;
      try {
        await HD.api("POST", "/api/jobs/" + jobId + "/" + button.dataset.act);
        location.href = "/";
      } catch (e) {
        alert(e.message);
      }
    });
  }

  const list = document.getElementById("transcript");
  if (!list) return;
  const wave = JSON.parse(HD.data.wave || "{}");
  const canvas = document.getElementById("wave");
  const audio = document.getElementById("audio");
  const peaks = wave.waveform ? Wave.fromBase64(wave.waveform.peaks) : null;
  const durationCell = document.getElementById("duration");
  const duration = (wave.waveform && wave.waveform.seconds) || 0;
  const segments = wave.segments || [];
  let current = null;
  let editing = false;

  function redraw() {
    Wave.draw(canvas, peaks, {
      duration, segments, current, playhead: audio && !audio.paused ? audio.currentTime : audio && audio.currentTime ? audio.currentTime : null,
    });
  }

  function segmentAt(time) {
    return segments.find((s) => time >= s.start && time <= s.end) ||
      segments.reduce((best, s) => (!best || Math.abs(s.start - time) < Math.abs(best.start - time) ? s : best), null);
  }

  function select(index, scroll) {
    current = index;
    for (const li of list.querySelectorAll("li.current")) li.classList.remove("current");
    const li = document.getElementById("seg-" + index);
    if (li) {
      li.classList.add("current");
      if (scroll) li.scrollIntoView({ block: "center", behavior: "smooth" });
    }
    redraw();
  }

  function seek(time) {
    if (!audio) return;
    audio.currentTime = Math.max(0, time);
    audio.play().catch(() => {});
  }

  canvas.addEventListener("click", (event) => {
    const time = Wave.timeAt(canvas, event, duration);
    const segment = segmentAt(time);
    if (segment) select(segment.index, true);
    seek(segment ? segment.start : time);
  });
  list.addEventListener("click", (event) => {
    if (editing) return;
    const target = event.target.closest("[data-t]");
    const li = event.target.closest("li.seg");
    if (!li) return;
    if (event.target.closest("a.stamp")) event.preventDefault();
    select(Number(li.dataset.index), false);
    seek(Number((target || li).dataset.t || li.dataset.start));
  });

  if (audio) {
    let lastWord = null;
    audio.addEventListener("timeupdate", () => {
      const time = audio.currentTime;
      const segment = segments.find((s) => time >= s.start && time <= s.end);
      if (segment && segment.index !== current && !editing) select(segment.index, false);
      const li = segment && document.getElementById("seg-" + segment.index);
      if (li && !editing) {
        const words = [...li.querySelectorAll(".w")];
        let now = null;
        for (const w of words) if (Number(w.dataset.t) <= time) now = w;
        if (now !== lastWord) {
          if (lastWord) lastWord.classList.remove("now");
          if (now) now.classList.add("now");
          lastWord = now;
        }
      }
      redraw();
    });
  }
  window.addEventListener("resize", redraw);
  redraw();
  if (durationCell && !durationCell.textContent.trim()) durationCell.textContent = HD.hundredths(duration);

  // -- editing ------------------------------------------------------------------------------

  const editButton = document.getElementById("edit");
  const saveButton = document.getElementById("save");
  const cancelButton = document.getElementById("cancel");
  const status = document.getElementById("edit-status");
  const texts = () => [...list.querySelectorAll("li.seg .text")];

  function setEditing(on) {
    editing = on;
    list.classList.toggle("editing", on);
    for (const span of texts()) {
      if (on) {
        span.dataset.before = span.textContent;
        span.contentEditable = "plaintext-only";
        if (span.contentEditable !== "plaintext-only") span.contentEditable = "true";
      } else {
        span.removeAttribute("contenteditable");
      }
    }
    editButton.hidden = on;
    saveButton.hidden = cancelButton.hidden = !on;
    if (on) texts()[0] && texts()[0].focus();
  }

  editButton.addEventListener("click", () => setEditing(true));
  cancelButton.addEventListener("click", () => {
    for (const span of texts()) span.textContent = span.dataset.before;
    setEditing(false);
    location.reload();
  });
  saveButton.addEventListener("click", async () => {
    const edits = [];
    for (const span of texts()) {
      const text = span.innerText.replace(/\s+/g, " ").trim();
      if (text !== span.dataset.before.replace(/\s+/g, " ").trim()) edits.push({ index: Number(span.closest("li").dataset.index), text });
    }
    if (!edits.length) { setEditing(false); return; }
    saveButton.disabled = true;
    status.textContent = t("saving");
    try {
      await HD.api("PUT", "/api/jobs/" + jobId + "/transcript", { base: HD.data.sha, segments: edits });
      status.textContent = t("saved");
      setTimeout(() => location.reload(), 600);
    } catch (e) {
      status.textContent = e.status === 409 ? t("save_conflict") : e.message;
      saveButton.disabled = false;
    }
  });

  // -- copy all -------------------------------------------------------------------------------

  document.getElementById("copy").addEventListener("click", async () => {
    const lines = [...list.querySelectorAll("li")].map((li) => {
      const stamp = li.querySelector(".stamp");
      const text = li.querySelector(".text") || li.querySelector("em") || li;
      return ((stamp ? stamp.textContent + " " : "") + text.textContent.replace(/\s+/g, " ")).trim();
    });
    const text = lines.join("\n") + "\n";
    try {
      await navigator.clipboard.writeText(text);
    } catch (e) {
      const area = HD.el("textarea", { class: "visually-hidden" });
      area.value = text;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    status.textContent = t("copied");
  });
})();
