// hushdrop: waveforms on a canvas, from decoded audio (before sending) or stored peaks (results).
"use strict";

const Wave = (() => {
  // Max-abs per bin over every channel of an AudioBuffer, 0…1.
  function fromBuffer(buffer, count) {
    const length = buffer.length;
    const bins = Math.max(1, Math.min(count || 1200, length));
    const out = new Float32Array(bins);
    for (let c = 0; c < buffer.numberOfChannels; c++) {
      const data = buffer.getChannelData(c);
      for (let b = 0; b < bins; b++) {
        const start = Math.floor((b * length) / bins), end = Math.floor(((b + 1) * length) / bins);
        let peak = out[b];
        for (let i = start; i < end; i++) {
          const v = data[i] < 0 ? -data[i] : data[i];
          if (v > peak) peak = v;
        }
        out[b] = Math.min(1, peak);
      }
    }
    return out;
  }

  // The JSON output's peaks: one base64 string of bytes 0…255.
  function fromBase64(text) {
    const raw = atob(text || "");
    const out = new Float32Array(raw.length);
    for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i) / 255;
    return out;
  }

  function draw(canvas, peaks, options) {
    const o = options || {};
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
    if (canvas.width !== width) canvas.width = width;
    if (canvas.height !== height) canvas.height = height;
    const g = canvas.getContext("2d");
    g.clearRect(0, 0, width, height);
    const duration = o.duration || 0;
    const x = (t) => (duration > 0 ? (t / duration) * width : 0);
    for (const seg of o.segments || []) {
      g.fillStyle = seg.index === o.current ? "rgba(31,111,92,0.28)" : "rgba(31,111,92,0.10)";
      g.fillRect(x(seg.start), 0, Math.max(1, x(seg.end) - x(seg.start)), height);
    }
    if (peaks && peaks.length) {
      let top = 0;
      for (const p of peaks) if (p > top) top = p;
      const scale = top > 0.02 ? 1 / top : 1;
      const mid = height / 2;
      const step = width / peaks.length;
      g.fillStyle = o.color || "#1f6f5c";
      const bar = Math.max(1, step * 0.8);
      for (let i = 0; i < peaks.length; i++) {
        const h = Math.max(ratio, peaks[i] * scale * (mid - 2 * ratio));
        g.fillRect(i * step, mid - h, bar, 2 * h);
      }
    } else {
      g.fillStyle = "#c9d1cd";
      g.fillRect(0, height / 2 - ratio / 2, width, ratio);
    }
    if (o.playhead !== undefined && o.playhead !== null && duration > 0) {
      g.fillStyle = "#c62828";
      g.fillRect(x(o.playhead) - ratio / 2, 0, ratio * 1.5, height);
    }
  }

  function timeAt(canvas, event, duration) {
    const rect = canvas.getBoundingClientRect();
    const fraction = Math.min(1, Math.max(0, (event.clientX - rect.left) / rect.width));
    return fraction * (duration || 0);
  }

  return { fromBuffer, fromBase64, draw, timeAt };
})();
