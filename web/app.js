// The translation page: form, streaming output, status, history, share link. Model and user text only ever go
// into the page through textContent (never innerHTML).
import { HmtClient } from "/static/client.js";
import { DocumentPanel } from "/static/documents.js";

const HISTORY_KEY = "hmt-stream.history";
const PREFS_KEY = "hmt-stream.prefs";
const HISTORY_MAX = 20;
const TRANSPORT_LABELS = { websocket: "WebSocket", sse: "Server-Sent Events", poll: "long-poll" };
// speechSynthesis wants BCP 47 tags; most of Hunyuan-MT's codes already are.
const SPEECH_LANG = { "zh": "zh-CN", "zh-Hant": "zh-TW", "yue": "zh-HK", "ug": "ug-CN", "bo": "bo-CN" };

const $ = (id) => document.getElementById(id);
const ui = {
  form: $("form"), source: $("source"), target: $("target"), swap: $("swap"), input: $("input"),
  counter: $("counter"), shortcut: $("shortcut"), output: $("output"), copy: $("copy"), speak: $("speak"),
  share: $("share"), translate: $("translate"), stop: $("stop"), status: $("status"),
  statusText: $("status-text"), history: $("history"), historyEmpty: $("history-empty"),
  clearHistory: $("clear-history"), transport: $("transport"), model: $("model"), banner: $("demo-banner"),
  signin: $("signin"), apiKey: $("api-key"),
};

const client = new HmtClient();
const documents = new DocumentPanel();
let maxChars = 5000;
let languages = new Map();
let current = null; // the Translation on screen
let lastSource = "en"; // the last explicit source, for swapping away from "Detect language"

// For debugging and the end-to-end tests: the client and the translation on screen.
window.hmt = { client, documents, get translation() { return current; } };

// -- small helpers ------------------------------------------------------------------------------------------------

function chars(text) {
  return [...text].length; // code points, as the server counts them
}

function readJson(key, fallback) {
  try {
    const value = JSON.parse(localStorage.getItem(key));
    return value ?? fallback;
  } catch {
    return fallback;
  }
}

function writeJson(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // storage full or disabled: the page still works, it just forgets
  }
}

function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.statusText.textContent = text;
  ui.output.dataset.state = state;
}

function flash(button, text) {
  const label = button.dataset.label || button.textContent;
  button.dataset.label = label;
  button.textContent = text;
  clearTimeout(button._flash);
  button._flash = setTimeout(() => {
    button.textContent = label;
  }, 1500);
}

function languageName(code) {
  if (code === "auto") return "Detect language";
  const lang = languages.get(code);
  return lang ? lang.name : code;
}

// -- the form -----------------------------------------------------------------------------------------------------

function fillLanguages(list) {
  languages = new Map(list.map((lang) => [lang.code, lang]));
  for (const lang of list) {
    const label = `${lang.name} · ${lang.zh_name}`;
    ui.source.append(new Option(label, lang.code));
    ui.target.append(new Option(label, lang.code));
  }
}

function isLanguage(code, allowAuto) {
  return languages.has(code) || (allowAuto && code === "auto");
}

function setLanguages(source, target) {
  if (isLanguage(source, true)) ui.source.value = source;
  if (isLanguage(target, false)) ui.target.value = target;
  if (ui.source.value !== "auto") lastSource = ui.source.value;
  ui.output.lang = ui.target.value;
}

function defaultTarget() {
  const browser = (navigator.language || "en").split("-")[0];
  return browser !== "en" && languages.has(browser) ? browser : "zh";
}

function updateCounter() {
  const count = chars(ui.input.value);
  const over = count > maxChars;
  ui.counter.textContent = `${count.toLocaleString()} / ${maxChars.toLocaleString()}`;
  ui.counter.classList.toggle("over", over);
  ui.input.setAttribute("aria-invalid", over ? "true" : "false");
  ui.translate.disabled = over;
}

function savePrefs() {
  writeJson(PREFS_KEY, { source: ui.source.value, target: ui.target.value });
  if (ui.source.value !== "auto") lastSource = ui.source.value;
  ui.output.lang = ui.target.value;
}

function swap() {
  const source = ui.source.value;
  const target = ui.target.value;
  const newTarget = source === "auto" ? (lastSource !== target ? lastSource : defaultTarget()) : source;
  setLanguages(target, newTarget);
  if (ui.output.textContent && (!current || current.finished)) {
    ui.input.value = ui.output.textContent;
    ui.output.textContent = "";
    setOutputTools(false);
    updateCounter();
  }
  savePrefs();
}

// -- share link ---------------------------------------------------------------------------------------------------

function shareUrl(request) {
  const url = new URL(location.pathname, location.href);
  url.searchParams.set("source", request.source);
  url.searchParams.set("target", request.target);
  // A document is too long for an address bar: the link carries the languages only.
  if (chars(request.text) <= 2000) url.searchParams.set("q", request.text);
  return url;
}

function formRequest() {
  return { text: ui.input.value, source: ui.source.value, target: ui.target.value, ...documents.fields() };
}

function restoreFromUrl() {
  const params = new URLSearchParams(location.search);
  const prefs = readJson(PREFS_KEY, {});
  setLanguages(prefs.source || "auto", prefs.target || defaultTarget());
  if (params.has("source") || params.has("target")) setLanguages(params.get("source"), params.get("target"));
  if (params.has("q")) ui.input.value = params.get("q");
}

// -- output -------------------------------------------------------------------------------------------------------

function render(text) {
  const out = ui.output;
  // Follow the text down unless the reader has scrolled up to read something.
  const atBottom = out.scrollHeight - out.scrollTop - out.clientHeight < 32;
  out.textContent = text;
  if (atBottom) out.scrollTop = out.scrollHeight;
}

function setOutputTools(enabled) {
  ui.copy.disabled = !enabled;
  ui.speak.disabled = !enabled || !("speechSynthesis" in window);
}

function setRunning(running) {
  ui.stop.disabled = !running;
  ui.form.classList.toggle("running", running);
}

// -- translating --------------------------------------------------------------------------------------------------

function translate() {
  const request = formRequest();
  if (!request.text.trim()) {
    setStatus("error", "Type some text to translate first.");
    ui.input.focus();
    return;
  }
  if (chars(request.text) > maxChars) {
    setStatus("error", `The text is over the server's limit of ${maxChars} characters.`);
    return;
  }
  if (current && !current.finished) current.cancel();
  history.replaceState(null, "", shareUrl(request));
  savePrefs();
  stopSpeaking();
  render("");
  setOutputTools(false);
  ui.output.lang = request.target;
  delete ui.output.dataset.session;
  documents.reset();
  setStatus("connecting", "Connecting…");
  setRunning(true);

  const started = performance.now();
  const translation = client.translate(request);
  current = translation;
  const mine = (handler) => (event) => {
    if (current === translation) handler(event.detail);
  };
  translation.addEventListener("session", mine(({ session }) => {
    ui.output.dataset.session = session;
  }));
  translation.addEventListener("queued", mine(({ position }) => {
    setStatus("queued", `Queued #${position}`);
  }));
  translation.addEventListener("started", mine((event) => {
    setStatus("running", "Translating…");
    documents.started(event, languageName);
  }));
  translation.addEventListener("progress", mine((event) => documents.progress(event)));
  translation.addEventListener("delta", mine(() => {
    if (ui.status.dataset.state !== "running") setStatus("running", "Translating…");
    render(translation.text);
  }));
  translation.addEventListener("reconnecting", mine(({ from, signin }) => {
    // "connecting" until the next event: the first delta on the new transport puts "Translating…" back.
    setStatus("connecting", signin ? "Signing in again to resume…"
      : `Connection over ${TRANSPORT_LABELS[from] || from} lost — resuming…`);
  }));
  translation.addEventListener("done", mine((event) => {
    render(translation.text);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    setStatus("done", `Done in ${seconds} s${event.cached ? " (cached)" : ""}`);
    setRunning(false);
    setOutputTools(Boolean(translation.text));
    documents.finished(request, translation.text);
    addHistory({ ...request, text: request.text.trim(), translation: translation.text });
  }));
  translation.addEventListener("cancelled", mine(() => {
    setStatus("cancelled", "Stopped");
    setRunning(false);
    setOutputTools(Boolean(translation.text));
  }));
  translation.addEventListener("error", mine((event) => {
    if (event.code === "unauthorized") askForKey();
    setStatus("error", `Error: ${event.message || event.code}`);
    setRunning(false);
    setOutputTools(Boolean(translation.text));
  }));
}

function stop() {
  if (current && !current.finished) {
    current.cancel();
    setStatus("running", "Stopping…");
  }
}

// -- copy and read aloud ------------------------------------------------------------------------------------------

async function copyText(text, button, done) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No async clipboard (plain http on another host, or refused): the old way, from a hidden textarea.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    if (!ok) {
      flash(button, "Copy failed");
      return;
    }
  }
  flash(button, done);
}

function stopSpeaking() {
  if ("speechSynthesis" in window && speechSynthesis.speaking) speechSynthesis.cancel();
  ui.speak.textContent = "Read aloud";
}

function speak() {
  if (!("speechSynthesis" in window)) return;
  if (speechSynthesis.speaking) {
    stopSpeaking();
    return;
  }
  const text = ui.output.textContent;
  if (!text) return;
  const lang = SPEECH_LANG[ui.output.lang] || ui.output.lang;
  const utterance = new SpeechSynthesisUtterance(text);
  utterance.lang = lang;
  const voice = speechSynthesis.getVoices().find((v) => v.lang.toLowerCase().startsWith(lang.toLowerCase()));
  if (voice) utterance.voice = voice;
  utterance.onend = () => {
    ui.speak.textContent = "Read aloud";
  };
  utterance.onerror = utterance.onend;
  ui.speak.textContent = "Stop reading";
  speechSynthesis.speak(utterance);
}

// -- history ------------------------------------------------------------------------------------------------------

function loadHistory() {
  const items = readJson(HISTORY_KEY, []);
  return Array.isArray(items) ? items : [];
}

function addHistory(entry) {
  const same = (item) => item.text === entry.text && item.source === entry.source && item.target === entry.target;
  const items = [{ ...entry, at: Date.now() }, ...loadHistory().filter((item) => !same(item))];
  writeJson(HISTORY_KEY, items.slice(0, HISTORY_MAX));
  renderHistory();
}

function excerpt(text, length) {
  const points = [...text];
  return points.length > length ? `${points.slice(0, length).join("")}…` : text;
}

function renderHistory() {
  const items = loadHistory();
  const list = [];
  for (const item of items) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "history-item";
    const langs = document.createElement("span");
    langs.className = "langs";
    langs.textContent = `${languageName(item.source)} → ${languageName(item.target)}`;
    const source = document.createElement("span");
    source.className = "src";
    source.textContent = excerpt(item.text, 120);
    const target = document.createElement("span");
    target.className = "dst";
    target.textContent = excerpt(item.translation, 160);
    target.lang = item.target;
    button.append(langs, source, target);
    button.setAttribute("aria-label", `Restore: ${excerpt(item.text, 60)} (${langs.textContent})`);
    button.addEventListener("click", () => restoreHistory(item));
    li.append(button);
    list.push(li);
  }
  ui.history.replaceChildren(...list);
  ui.historyEmpty.hidden = items.length > 0;
  ui.clearHistory.disabled = items.length === 0;
}

function restoreHistory(item) {
  if (current && !current.finished) current.cancel();
  current = null;
  setLanguages(item.source, item.target);
  ui.input.value = item.text;
  updateCounter();
  render(item.translation);
  delete ui.output.dataset.session;
  setOutputTools(Boolean(item.translation));
  setRunning(false);
  setStatus("idle", "Restored from history");
  history.replaceState(null, "", shareUrl({ text: item.text, source: item.source, target: item.target }));
  savePrefs();
  ui.input.focus();
}

// -- sign-in (only when the server has auth on) --------------------------------------------------------------------

function askForKey() {
  ui.signin.hidden = false;
  ui.apiKey.focus();
}

async function connect() {
  try {
    await client.connect();
    maxChars = client.info.max_chars || maxChars;
    updateCounter();
    showTransport(client.transportName);
    if (!current) setStatus("idle", "Ready");
  } catch (error) {
    showTransport(null);
    if (error.code === "unauthorized") {
      askForKey();
      setStatus("error", "Sign in with an API key to translate.");
    } else if (!current) {
      setStatus("error", `Cannot connect: ${error.message}`);
    }
  }
}

async function signIn(event) {
  event.preventDefault();
  const key = ui.apiKey.value.trim();
  if (!key) return;
  setStatus("connecting", "Signing in…");
  try {
    await client.signIn(key);
  } catch (error) {
    setStatus("error", `Sign-in failed: ${error.message}`);
    ui.apiKey.select();
    return;
  }
  ui.apiKey.value = "";
  ui.signin.hidden = true;
  await connect();
  ui.input.focus();
}

// -- wiring -------------------------------------------------------------------------------------------------------

function showTransport(name) {
  ui.transport.dataset.transport = name || "";
  ui.transport.textContent = name ? TRANSPORT_LABELS[name] || name : "offline";
}

function wire() {
  const mac = /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent);
  ui.shortcut.textContent = mac ? "⌘+Enter to translate" : "Ctrl+Enter to translate";
  ui.translate.title = mac ? "Translate (⌘+Enter)" : "Translate (Ctrl+Enter)";
  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    translate();
  });
  ui.form.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      if (!ui.translate.disabled) translate();
    } else if (event.key === "Escape" && current && !current.finished) {
      event.preventDefault();
      stop();
    }
  });
  ui.input.addEventListener("input", updateCounter);
  documents.wire(updateCounter);
  ui.source.addEventListener("change", savePrefs);
  ui.target.addEventListener("change", savePrefs);
  ui.swap.addEventListener("click", swap);
  ui.stop.addEventListener("click", stop);
  ui.copy.addEventListener("click", () => copyText(ui.output.textContent, ui.copy, "Copied"));
  ui.share.addEventListener("click", () => copyText(shareUrl(formRequest()).toString(), ui.share, "Link copied"));
  ui.speak.addEventListener("click", speak);
  ui.clearHistory.addEventListener("click", () => {
    writeJson(HISTORY_KEY, []);
    renderHistory();
  });
  client.addEventListener("transport", (event) => showTransport(event.detail.name));
  client.addEventListener("signedout", askForKey);
  ui.signin.addEventListener("submit", signIn);
  window.addEventListener("pagehide", () => client.close());
}

async function getJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(`${url} answered HTTP ${response.status}`);
  return response.json();
}

async function start() {
  wire();
  setStatus("connecting", "Connecting…");
  try {
    fillLanguages(await getJson("/api/languages"));
  } catch (error) {
    setStatus("error", `Cannot reach the server: ${error.message}`);
    return;
  }
  restoreFromUrl();
  renderHistory();
  updateCounter();
  getJson("/api/health").then((health) => {
    ui.banner.hidden = !health.demo;
    document.body.classList.toggle("demo", Boolean(health.demo));
    ui.model.textContent = health.demo ? "demo model" : `model: ${health.model}`;
  }).catch(() => {});
  await connect();
  document.body.dataset.ready = "true";
}

start();
