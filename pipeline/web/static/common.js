// hushdrop: helpers shared by every page (no framework, no outside script).
"use strict";

const HD = (() => {
  const data = document.getElementById("hd").dataset;
  const messages = JSON.parse(data.i18n || "{}");

  function t(key, fields) {
    let text = messages[key] || key;
    for (const [name, value] of Object.entries(fields || {})) text = text.split("{" + name + "}").join(String(value));
    return text;
  }

  async function api(method, url, body) {
    const init = { method, headers: { "X-CSRF-Token": data.csrf }, credentials: "same-origin" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    let payload = null;
    try { payload = await response.json(); } catch (e) { payload = null; }
    if (!response.ok) {
      const error = new Error((payload && payload.error) || response.statusText || String(response.status));
      error.status = response.status;
      throw error;
    }
    return payload;
  }

  function pad(n, width) { return String(n).padStart(width || 2, "0"); }

  // 00:01:02 (the transcript's stamps)
  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds || 0));
    return pad(Math.floor(s / 3600)) + ":" + pad(Math.floor(s / 60) % 60) + ":" + pad(s % 60);
  }

  // 00:00:31.92 (durations, to the hundredth)
  function hundredths(seconds) {
    const c = Math.round(Math.max(0, seconds || 0) * 100);
    return pad(Math.floor(c / 360000)) + ":" + pad(Math.floor(c / 6000) % 60) + ":" + pad(Math.floor(c / 100) % 60) + "." + pad(c % 100);
  }

  // 1 h 2 min / 3 min 4 s / 5 s (elapsed and expected times)
  function span(seconds) {
    const s = Math.max(0, Math.round(seconds || 0));
    const [h, m, sec] = [t("unit_h"), t("unit_min"), t("unit_s")];
    if (s >= 3600) return Math.floor(s / 3600) + h + (Math.floor(s / 60) % 60) + m;
    if (s >= 60) return Math.floor(s / 60) + m + (s % 60) + sec;
    return s + sec;
  }

  function size(bytes) {
    const units = ["B", "KB", "MB", "GB"];
    let n = bytes, i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }

  // el("td", {class: "x", text: "…"}, [children]) — text is always set as text, never as HTML
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children || []) if (child) node.append(child);
    return node;
  }

  function fillLanguages(select, profile, keep) {
    const previous = keep ? select.value : "";
    select.replaceChildren();
    if (profile.language === "auto") {
      select.append(el("option", { value: "", text: t("language_auto") }));
    } else {
      select.append(el("option", { value: "", text: t("language_profile", { language: profile.language_name + " (" + profile.language + ")" }) }));
      select.append(el("option", { value: "auto", text: t("language_auto") }));
    }
    for (const [code, name] of profile.languages) select.append(el("option", { value: code, text: name }));
    if (previous && [...select.options].some((o) => o.value === previous)) select.value = previous;
  }

  const logout = document.getElementById("logout");
  if (logout) logout.addEventListener("click", async () => { await api("POST", "/logout"); location.href = "/login"; });

  return { data, t, api, clock, hundredths, span, size, el, fillLanguages };
})();
