// hmt-stream client: negotiates WebSocket → SSE → long-poll, streams translation sessions, and resumes a
// session on the next transport from the last seq it saw when one fails. No dependencies; see docs/protocol.md.

const EVENT_TYPES = ["queued", "started", "delta", "progress", "done", "error", "cancelled"];
const TERMINAL = new Set(["done", "error", "cancelled"]);
const STORAGE_KEY = "hmt-stream.transports";
const TOKEN_EXPIRED = 4401; // WebSocket close code: the socket's token expired

/** A transport failed. `fatal` means the server itself refused (another transport would get the same answer). */
export class TransportError extends Error {
  constructor(message, { fatal = false, code = "connection_lost" } = {}) {
    super(message);
    this.name = "TransportError";
    this.fatal = fatal;
    this.code = code;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function absolute(url, base) {
  return new URL(url, base || globalThis.location?.href).toString();
}

function sessionUrl(template, session, base) {
  return absolute(template.replace("{session}", encodeURIComponent(session)), base);
}

/** The JSON body of an HTTP error answer, as a fatal TransportError for 4xx and a retryable one otherwise. */
async function httpError(response, what) {
  let code = `http_${response.status}`;
  let message = `${what} answered HTTP ${response.status}`;
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    // not JSON (a proxy's error page): keep the status line
  }
  if (response.status === 503 && response.headers.get("Retry-After")) {
    message += ` (retry in ${response.headers.get("Retry-After")} s)`;
  }
  const fatal = (response.status >= 400 && response.status < 500) || code === "overloaded";
  return new TransportError(message, { fatal, code });
}

/** sessionStorage that tolerates being unavailable (privacy modes, sandboxed frames). */
function tabStorage() {
  try {
    const storage = globalThis.sessionStorage;
    storage.getItem(STORAGE_KEY);
    return storage;
  } catch {
    return null;
  }
}

/**
 * One translation: a session on the server, followed through whichever transport works.
 * Events (CustomEvent, the protocol's event object in `detail`): queued, started, delta, progress, done, error,
 * cancelled,
 * plus `session` (the id is known) and `reconnecting` ({from, reason}: a transport failed, resuming elsewhere).
 */
export class Translation extends EventTarget {
  constructor(request) {
    super();
    this.request = request;
    this.session = null;
    this.lastSeq = 0;
    this.text = "";
    this.state = "connecting";
    this.result = null;
    this.finished = false;
    this.cancelRequested = false;
    this.transport = null;
    this.seqs = []; // every seq accepted, in order: 1, 2, 3, … (tests and debugging)
    this._cancel = null;
    this.finishedPromise = new Promise((resolve) => {
      this._resolveFinished = resolve;
    });
  }

  /** Ask the server to stop; the `cancelled` event follows through the stream. */
  cancel() {
    this.cancelRequested = true;
    if (!this.finished && this.session && this._cancel) this._cancel(this);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _bind(session) {
    if (this.session === session) return;
    if (this.session) throw new TransportError(`events of session ${session} arrived for ${this.session}`);
    this.session = session;
    this._emit("session", { session });
    if (this.cancelRequested && this._cancel) this._cancel(this);
  }

  /** Take one event from any transport; returns true once the session has ended. Replays are skipped by seq. */
  _accept(event) {
    if (this.finished) return true;
    if (event.session !== this.session) this._bind(event.session);
    if (event.seq <= this.lastSeq) return false; // already seen on an earlier transport
    if (event.seq !== this.lastSeq + 1) {
      throw new TransportError(`missing events ${this.lastSeq + 1}..${event.seq - 1}`);
    }
    this.lastSeq = event.seq;
    this.seqs.push(event.seq);
    switch (event.type) {
      case "queued":
        this.state = "queued";
        break;
      case "started":
        this.state = "running";
        break;
      case "delta":
        this.state = "running";
        this.text += event.text;
        break;
      case "done":
        if (event.text !== this.text) {
          console.error("hmt-stream: the deltas joined differ from the done text", this.text, event.text);
          this.text = event.text;
        }
        break;
      default:
        break;
    }
    if (TERMINAL.has(event.type)) this._end(event.type, event);
    this._emit(event.type, event);
    return this.finished;
  }

  _end(state, event) {
    this.finished = true;
    this.state = state;
    this.result = event;
    this._resolveFinished(this);
  }

  /** End locally: the server could not be reached, or refused the request. */
  _fail(code, message) {
    if (this.finished) return;
    const event = { session: this.session, type: "error", code, message };
    this._end("error", event);
    this._emit("error", event);
  }
}

// -- transports -------------------------------------------------------------------------------------------------
// Each has open() (resolves once an application message came through), run(translation) (resolves when the
// session ended, rejects with TransportError when the transport failed) and cancel(translation).

class WebSocketTransport {
  constructor(client, spec) {
    this.name = "websocket";
    this.client = client;
    this.url = absolute(spec.url, client.base).replace(/^http/, "ws");
    this.socket = null;
    this.alive = false;
    this.heartbeatMs = client.heartbeatS * 1000;
    this.lastMessageAt = 0;
    this.bySession = new Map();
    this.byRef = new Map();
    this.nextRef = 1;
    this.watchdog = null;
  }

  open() {
    if (this.alive) return Promise.resolve();
    return new Promise((resolve, reject) => {
      let socket;
      try {
        socket = new WebSocket(this.url);
      } catch (error) {
        reject(new TransportError(`WebSocket refused: ${error.message}`));
        return;
      }
      this.socket = socket;
      const timer = setTimeout(() => {
        this.socket = null; // a hello that comes later is ignored: this socket was given up on
        socket.close();
        reject(new TransportError("no hello on the WebSocket"));
      }, this.client.helloTimeoutMs);
      socket.onmessage = (message) => {
        if (this.socket !== socket) return; // a socket given up on earlier
        this.lastMessageAt = Date.now();
        let frame;
        try {
          frame = JSON.parse(message.data);
        } catch {
          return;
        }
        if (!this.alive && frame.type === "hello") {
          clearTimeout(timer);
          this.alive = true;
          if (frame.heartbeat_s) this.heartbeatMs = frame.heartbeat_s * 1000;
          this.watchdog = setInterval(() => this._checkHeartbeat(), 1000);
          resolve();
          return;
        }
        this._frame(frame);
      };
      socket.onclose = (close) => {
        clearTimeout(timer);
        if (this.socket !== socket) return;
        const wasAlive = this.alive;
        // 4401: the token this socket was opened with has expired; sign in again and resume on a new socket.
        const code = close.code === TOKEN_EXPIRED ? "token_expired" : "connection_lost";
        this._down(`WebSocket closed (${close.code}${close.reason ? `: ${close.reason}` : ""})`, code);
        if (!wasAlive) reject(new TransportError(`WebSocket closed before hello (${close.code})`, { code }));
      };
      socket.onerror = () => {
        // onclose follows with the code; nothing to do here
      };
    });
  }

  _checkHeartbeat() {
    // The server pings every heartbeat_s; two missed pings (plus slack) mean a dead or silent connection.
    if (Date.now() - this.lastMessageAt > 2 * this.heartbeatMs + 1000) {
      const socket = this.socket;
      this.socket = null;
      this._down("no heartbeat on the WebSocket");
      try {
        socket.close(4000, "heartbeat timeout");
      } catch {
        // already closing
      }
    }
  }

  _down(reason, code = "connection_lost") {
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = null;
    this.alive = false;
    const subscribers = [...this.bySession.values(), ...this.byRef.values()];
    this.bySession.clear();
    this.byRef.clear();
    for (const sub of new Set(subscribers)) sub.reject(new TransportError(reason, { code }));
    this.client._transportDown(this);
  }

  _send(frame) {
    if (!this.alive) throw new TransportError("WebSocket is not open");
    this.socket.send(JSON.stringify(frame));
  }

  _frame(frame) {
    if (frame.type === "ping") {
      if (this.alive) this.socket.send(JSON.stringify({ type: "pong" }));
      return;
    }
    if (frame.type === "pong" || frame.type === "hello") return;
    if (frame.type === "error" && frame.seq === undefined) {
      // A message could not be served (overloaded, not_found, bad_request): it ends that translation only.
      const sub = (frame.ref && this.byRef.get(frame.ref)) || (frame.session && this.bySession.get(frame.session));
      if (!sub) {
        console.warn("hmt-stream: WebSocket error", frame);
        return;
      }
      this._forget(sub);
      sub.reject(new TransportError(frame.message || frame.code, { fatal: true, code: frame.code }));
      return;
    }
    if (frame.seq === undefined || !frame.session) return;
    let sub = this.bySession.get(frame.session);
    if (!sub && frame.ref !== undefined && this.byRef.has(frame.ref)) {
      sub = this.byRef.get(frame.ref);
      this.byRef.delete(frame.ref);
      sub.session = frame.session;
      this.bySession.set(frame.session, sub);
    }
    if (!sub) return; // a session this socket no longer follows
    try {
      if (sub.translation._accept(frame)) {
        this._forget(sub);
        sub.resolve();
      }
    } catch (error) {
      this._forget(sub);
      sub.reject(error);
    }
  }

  _forget(sub) {
    if (sub.ref !== undefined) this.byRef.delete(sub.ref);
    if (sub.session) this.bySession.delete(sub.session);
  }

  run(translation) {
    return new Promise((resolve, reject) => {
      if (!this.alive) {
        reject(new TransportError("WebSocket is not open"));
        return;
      }
      const sub = { translation, resolve, reject, session: translation.session };
      if (translation.session) {
        this.bySession.set(translation.session, sub);
        this._send({ type: "resume", session: translation.session, after: translation.lastSeq });
      } else {
        sub.ref = `r${this.nextRef++}`;
        this.byRef.set(sub.ref, sub);
        // The whole request: text, source, target and any document fields (format, glossary, context).
        this._send({ ...translation.request, type: "translate", ref: sub.ref });
      }
    });
  }

  cancel(translation) {
    if (this.alive) this._send({ type: "cancel", session: translation.session });
    else return this.client._deleteSession(translation);
    return Promise.resolve();
  }

  close() {
    const socket = this.socket;
    this.socket = null;
    this.alive = false;
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = null;
    if (socket) socket.close(1000);
  }
}

class SseTransport {
  constructor(client, spec) {
    this.name = "sse";
    this.client = client;
    this.url = spec.url;
    this.probeUrl = spec.probe_url;
    this.alive = false;
  }

  /** A stream that says hello at once: no hello within the timeout means a proxy is buffering streams. */
  open() {
    if (this.alive || !this.probeUrl) {
      this.alive = true;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const source = new EventSource(absolute(this.probeUrl, this.client.base));
      const finish = (error) => {
        clearTimeout(timer);
        source.close();
        if (error) reject(error);
        else {
          this.alive = true;
          resolve();
        }
      };
      const timer = setTimeout(() => finish(new TransportError("no hello on the SSE probe (buffering proxy?)")),
        this.client.probeTimeoutMs);
      source.addEventListener("hello", () => finish(null));
      source.addEventListener("error", () => {
        if (source.readyState === EventSource.CLOSED) finish(new TransportError("SSE probe refused"));
      });
    });
  }

  async run(translation) {
    if (!translation.session) await this.client._createSession(translation);
    if (translation.finished) return;
    const url = new URL(translation.eventsUrl || sessionUrl(this.url, translation.session, this.client.base));
    url.searchParams.set("after", String(translation.lastSeq));
    await new Promise((resolve, reject) => {
      const source = new EventSource(url.toString());
      // A running session writes often; the server's `: ping` lines are invisible to EventSource, so silence
      // this long while generating means a proxy holds the stream back: long-poll takes over from the last seq.
      const stallMs = 2 * this.client.heartbeatS * 1000 + 1000;
      let lastEventAt = Date.now();
      const watchdog = setInterval(() => {
        if (translation.state === "running" && Date.now() - lastEventAt > stallMs) {
          stop(new TransportError("no events on the SSE stream (buffering proxy?)"));
        }
      }, 1000);
      const stop = (error) => {
        clearInterval(watchdog);
        source.close();
        if (error) reject(error);
        else resolve();
      };
      const onEvent = (message) => {
        lastEventAt = Date.now();
        let event;
        try {
          event = JSON.parse(message.data);
        } catch {
          stop(new TransportError("bad SSE data"));
          return;
        }
        try {
          if (translation._accept(event)) stop(null);
        } catch (error) {
          stop(error);
        }
      };
      for (const type of EVENT_TYPES) {
        source.addEventListener(type, (message) => {
          // `error` is both the session's error event (with data) and EventSource's connection error (without).
          if (type === "error" && typeof message.data !== "string") {
            stop(new TransportError("SSE stream failed"));
            return;
          }
          onEvent(message);
        });
      }
    });
  }

  cancel(translation) {
    return this.client._deleteSession(translation);
  }

  close() {
    this.alive = false;
  }
}

class PollTransport {
  constructor(client, spec) {
    this.name = "poll";
    this.client = client;
    this.url = spec.url;
    this.alive = true;
  }

  open() {
    this.alive = true;
    return Promise.resolve();
  }

  async run(translation) {
    if (!translation.session) await this.client._createSession(translation);
    const timeout = this.client.pollTimeoutS;
    while (!translation.finished) {
      const url = new URL(translation.eventsUrl || sessionUrl(this.url, translation.session, this.client.base));
      url.searchParams.set("after", String(translation.lastSeq));
      url.searchParams.set("timeout", String(timeout));
      const abort = new AbortController();
      // The server answers within `timeout`; past it (plus slack) something between us swallowed the answer.
      const timer = setTimeout(() => abort.abort(), (timeout + 15) * 1000);
      let page;
      try {
        const response = await fetch(url, { signal: abort.signal, cache: "no-store",
          headers: { Accept: "application/json" } });
        if (!response.ok) throw await httpError(response, "long-poll");
        page = await response.json();
      } catch (error) {
        if (error instanceof TransportError) throw error;
        throw new TransportError(`long-poll failed: ${error.message}`);
      } finally {
        clearTimeout(timer);
      }
      for (const event of page.events || []) {
        if (translation._accept(event)) return;
      }
      if (page.done && !translation.finished) throw new TransportError("long-poll said done without an end event");
    }
  }

  cancel(translation) {
    return this.client._deleteSession(translation);
  }

  close() {}
}

const TRANSPORTS = { websocket: WebSocketTransport, sse: SseTransport, poll: PollTransport };

/**
 * The client. Events (CustomEvent): `transport` ({name, previous}) when the active transport changes;
 * `signedout` when the server's auth token could not be renewed (call signIn(key) again).
 *
 *   const client = new HmtClient();
 *   await client.connect();                       // optional: negotiate and open the best transport now
 *   const t = client.translate({text, source: "auto", target: "fr"});
 *   t.addEventListener("delta", (e) => out.textContent += e.detail.text);
 */
export class HmtClient extends EventTarget {
  constructor(options = {}) {
    super();
    this.base = options.base || globalThis.location?.href;
    this.helloTimeoutMs = options.helloTimeoutMs ?? 5000;
    this.probeTimeoutMs = options.probeTimeoutMs ?? 5000;
    this.retryBetterMs = options.retryBetterMs ?? 120000;
    this.backoffMs = options.backoffMs ?? [500, 1000, 2000, 4000, 8000];
    this.maxFailures = options.maxFailures ?? 8;
    this.storage = options.storage === undefined ? tabStorage() : options.storage;
    this.info = null;
    this.heartbeatS = 15;
    this.pollTimeoutS = 20;
    this.transport = null;
    this.signedIn = false;
    this._transports = new Map();
    this._connecting = null;
    this._renewal = null;
    this._signInWaiters = [];
  }

  /** GET /api/negotiate: the enabled transports, best first, and the server's limits. */
  async negotiate() {
    const response = await fetch(absolute("/api/negotiate", this.base), { cache: "no-store" });
    if (!response.ok) throw await httpError(response, "negotiate");
    this.info = await response.json();
    this.heartbeatS = this.info.heartbeat_s || this.heartbeatS;
    this.pollTimeoutS = this.info.poll_timeout_s || this.pollTimeoutS;
    return this.info;
  }

  /**
   * With auth on: trade an API key for the server's short-lived browser token, an HttpOnly cookie that fetch,
   * EventSource and WebSocket all send by themselves. Without a key, renews the token the cookie already holds.
   */
  async signIn(key = null) {
    const headers = key ? { Authorization: `Bearer ${key}` } : {};
    let response;
    try {
      response = await fetch(absolute("/api/token", this.base), { method: "POST", headers, cache: "no-store" });
    } catch (error) {
      throw new TransportError(`cannot reach the server: ${error.message}`);
    }
    if (!response.ok) throw await httpError(response, "sign-in");
    const { expires_in: expiresIn } = await response.json();
    this.signedIn = true;
    clearTimeout(this._renewal);
    // Renew at half the lifetime, so that requests always carry a live token. (A WebSocket keeps the token it
    // was opened with: when that one expires the server closes it with 4401, and translations resume anew.)
    this._renewal = setTimeout(() => {
      this.signIn().catch(() => {
        this.signedIn = false;
        this.dispatchEvent(new CustomEvent("signedout"));
      });
    }, Math.max(1, (expiresIn || 600) / 2) * 1000);
    for (const resolve of this._signInWaiters.splice(0)) resolve();
    return expiresIn;
  }

  /** Renew the token; if the sign-in has ended (or its key is gone), wait until signIn(key) succeeds. */
  async _signInAgain() {
    try {
      await this.signIn();
      return;
    } catch {
      this.signedIn = false;
    }
    const signedIn = new Promise((resolve) => this._signInWaiters.push(resolve));
    this.dispatchEvent(new CustomEvent("signedout"));
    await signedIn;
  }

  get transportName() {
    return this.transport ? this.transport.name : null;
  }

  // -- what worked for this tab ---------------------------------------------------------------------------------

  _memory() {
    try {
      return JSON.parse(this.storage?.getItem(STORAGE_KEY) || "{}");
    } catch {
      return {};
    }
  }

  _remember(change) {
    const memory = { failedAt: {}, ...this._memory() };
    change(memory);
    try {
      this.storage?.setItem(STORAGE_KEY, JSON.stringify(memory));
    } catch {
      // storage full or refused: forgetting is harmless
    }
  }

  _markFailed(name) {
    this._remember((memory) => {
      memory.failedAt[name] = Date.now();
    });
  }

  /** Index of the best transport that has not failed lately (a better one is retried after retryBetterMs). */
  _startIndex(specs) {
    const failedAt = this._memory().failedAt || {};
    const now = Date.now();
    for (let i = 0; i < specs.length; i++) {
      const at = failedAt[specs[i].name];
      if (!at || now - at > this.retryBetterMs) return i;
    }
    return specs.length - 1;
  }

  // -- choosing a transport -------------------------------------------------------------------------------------

  /** Negotiate (once) and open the best working transport; resolves to its name. */
  connect() {
    if (this.transport && this.transport.alive && !this._betterDue()) return Promise.resolve(this.transport.name);
    if (!this._connecting) {
      this._connecting = this._connect().finally(() => {
        this._connecting = null;
      });
    }
    return this._connecting;
  }

  /** A better transport than the active one is due for another try. */
  _betterDue() {
    const specs = this._specs();
    const current = specs.findIndex((spec) => spec.name === this.transport.name);
    return current > 0 && this._startIndex(specs) < current;
  }

  _specs() {
    return (this.info?.transports || []).filter((spec) => TRANSPORTS[spec.name]);
  }

  async _connect() {
    for (let failures = 0; ; failures++) {
      try {
        if (!this.info || failures > 0) await this.negotiate();
        if (this.info.auth && !this.signedIn) {
          // A token cookie from an earlier visit may still be good; otherwise the page must ask for a key.
          try {
            await this.signIn();
          } catch (error) {
            if (error.code === "unauthorized") {
              throw new TransportError("this server needs an API key", { fatal: true, code: "unauthorized" });
            }
            throw error;
          }
        }
        const specs = this._specs();
        if (!specs.length) throw new TransportError("the server offers no transport", { fatal: true });
        for (let i = this._startIndex(specs); i < specs.length; i++) {
          const transport = this._transportFor(specs[i]);
          try {
            await transport.open();
          } catch (error) {
            if (i < specs.length - 1) this._markFailed(specs[i].name);
            continue;
          }
          this._use(transport);
          return transport.name;
        }
        throw new TransportError("no transport works");
      } catch (error) {
        if (error.fatal || failures + 1 >= this.maxFailures) throw error;
        await sleep(this._backoff(failures));
      }
    }
  }

  _transportFor(spec) {
    let transport = this._transports.get(spec.name);
    if (!transport || transport.url !== spec.url) {
      transport = new TRANSPORTS[spec.name](this, spec);
      this._transports.set(spec.name, transport);
    }
    return transport;
  }

  _use(transport) {
    const previous = this.transportName;
    this.transport = transport;
    this._remember((memory) => {
      memory.working = transport.name;
    });
    if (previous !== transport.name) {
      this.dispatchEvent(new CustomEvent("transport", { detail: { name: transport.name, previous } }));
    }
  }

  _transportDown(transport) {
    if (this.transport === transport) this.transport = null;
  }

  _backoff(failures) {
    const base = this.backoffMs[Math.min(failures, this.backoffMs.length - 1)];
    return base * (0.75 + Math.random() * 0.5);
  }

  // -- translating ----------------------------------------------------------------------------------------------

  /** Start a translation of {text, source, target}; returns the Translation at once. */
  translate(request) {
    const translation = new Translation({ ...request });
    translation._cancel = (t) => this._cancelOn(t);
    this._drive(translation);
    return translation;
  }

  async _drive(translation) {
    let failures = 0;
    let stalled = 0;
    let signedInAt = 0;
    while (!translation.finished) {
      if (translation.cancelRequested && !translation.session) {
        translation._end("cancelled", { type: "cancelled", session: null });
        translation._emit("cancelled", translation.result);
        return;
      }
      let transport;
      try {
        await this.connect();
        transport = this.transport;
        if (!transport) throw new TransportError("the transport closed at once");
      } catch (error) {
        translation._fail(error.code || "connection_lost", `cannot reach the server: ${error.message}`);
        return;
      }
      translation.transport = transport.name;
      try {
        await transport.run(translation);
      } catch (error) {
        if (translation.finished) return;
        if (error.code === "token_expired" || (error.code === "unauthorized" && this.info?.auth)) {
          // The token ran out under this translation: sign in again, then resume where it stopped. Give up only
          // when fresh tokens are refused at once, time after time (a clock far off, a server that changed keys).
          stalled = Date.now() - signedInAt < 1000 ? stalled + 1 : 0;
          if (stalled >= 3) {
            translation._fail(error.code, error.message);
            return;
          }
          translation._emit("reconnecting", { from: transport.name, reason: error.message, signin: true });
          await this._signInAgain();
          signedInAt = Date.now();
          continue;
        }
        if (error.fatal) {
          translation._fail(error.code, error.message);
          return;
        }
        failures++;
        if (failures >= this.maxFailures) {
          translation._fail("connection_lost", `lost the connection: ${error.message}`);
          return;
        }
        // Step down: the next attempt starts below the transport that just failed, from the last seq seen.
        const specs = this._specs();
        const last = specs.length ? specs[specs.length - 1].name : null;
        if (transport.name !== last) this._markFailed(transport.name);
        transport.close();
        this._transportDown(transport);
        translation._emit("reconnecting", { from: transport.name, reason: error.message });
        if (transport.name === last) await sleep(this._backoff(failures - 1));
      }
    }
  }

  _cancelOn(translation) {
    // Over the live transport when there is one (a WS cancel frame), else DELETE; the `cancelled` event then
    // comes through the stream like any other.
    const transport = this.transport;
    (async () => {
      try {
        if (transport && transport.alive) {
          await transport.cancel(translation);
          return;
        }
      } catch {
        // fall back to DELETE
      }
      await this._deleteSession(translation);
    })().catch(() => {});
  }

  // -- REST helpers shared by SSE and long-poll -----------------------------------------------------------------

  async _createSession(translation) {
    let response;
    try {
      response = await fetch(absolute("/api/sessions", this.base), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(translation.request),
      });
    } catch (error) {
      throw new TransportError(`cannot create the session: ${error.message}`);
    }
    if (!response.ok) throw await httpError(response, "POST /api/sessions");
    const created = await response.json();
    if (created.events_url) translation.eventsUrl = absolute(created.events_url, this.base);
    translation._bind(created.session);
  }

  async _deleteSession(translation) {
    if (!translation.session) return;
    await fetch(absolute(`/api/sessions/${encodeURIComponent(translation.session)}`, this.base),
      { method: "DELETE" });
  }

  close() {
    clearTimeout(this._renewal);
    for (const transport of this._transports.values()) transport.close();
    this.transport = null;
  }
}
