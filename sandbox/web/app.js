// Kehou sandbox: the web chat page. Plain JS, no build step, no network beyond the sandbox.
// It talks only to the page API under /sandbox/api (see the sandbox contract).
"use strict";

(() => {
  const API = "/sandbox/api";
  const LANGS = ["zh_CN", "en"];
  const NARROW = window.matchMedia("(max-width: 640px)");
  const STORE_PERSONA = "kehou.sandbox.persona";
  const STORE_LANG = "kehou.sandbox.lang";
  const ACTION_MS = 5000; // Telegram shows a chat action for about five seconds
  const PRESS_MS = 10000; // a pressed button stops spinning after this, answered or not
  const POLL_TIMEOUT_S = 25;
  const RECENT_EVENTS = 200; // per chat, to replay over a history that raced with the poll
  const MAX_PHOTOS = 10; // pictures sent at once: one album, as in Telegram
  const MAX_PHOTO_BYTES = 10 * 1024 * 1024; // Telegram's limit for a photo
  const PHOTO_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"];

  const $ = (id) => document.getElementById(id);
  const el = {
    app: $("app"),
    langSwitch: $("lang-switch"),
    personaState: $("persona-state"),
    personaGroups: $("persona-groups"),
    placeholder: $("chat-placeholder"),
    head: $("chat-head"),
    back: $("back-button"),
    avatar: $("chat-avatar"),
    title: $("chat-title"),
    subtitle: $("chat-subtitle"),
    botChip: $("bot-chip"),
    botName: $("bot-name"),
    botUsername: $("bot-username"),
    conn: $("conn-banner"),
    wrap: $("messages-wrap"),
    list: $("messages"),
    empty: $("chat-empty"),
    emptyStart: $("empty-start"),
    jump: $("jump-button"),
    toasts: $("toast-region"),
    composerArea: $("composer-area"),
    commandsMenu: $("commands-menu"),
    replyKeyboard: $("reply-keyboard"),
    composer: $("composer"),
    commandsButton: $("commands-button"),
    input: $("composer-input"),
    keyboardToggle: $("keyboard-toggle"),
    send: $("composer-send"),
    attach: $("attach-button"),
    attachInput: $("attach-input"),
    attachments: $("attachments"),
    alertDialog: $("alert-dialog"),
    alertText: $("alert-text"),
    photoDialog: $("photo-dialog"),
    photoImg: $("photo-dialog-img"),
    photoLink: $("photo-dialog-link"),
    photoCaption: $("photo-dialog-caption"),
  };
  // The list's nodes live in an inner element, so a ResizeObserver sees the content grow.
  const inner = document.createElement("div");
  inner.className = "messages-inner";
  el.list.append(inner);

  // ---------------------------------------------------------------------------------------
  // Small helpers

  const store = {
    get(key) {
      try {
        return window.localStorage.getItem(key);
      } catch {
        return null;
      }
    },
    set(key, value) {
      try {
        if (value == null) window.localStorage.removeItem(key);
        else window.localStorage.setItem(key, value);
      } catch {
        /* private mode: nothing to remember */
      }
    },
  };

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value == null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child == null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svgIcon(path, cls = "icon") {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("class", cls);
    svg.setAttribute("aria-hidden", "true");
    const p = document.createElementNS(ns, "path");
    p.setAttribute("d", path);
    svg.append(p);
    return svg;
  }

  const ICON = {
    group:
      "M16 11a3 3 0 1 0 0-6 3 3 0 0 0 0 6Zm-8 0a3 3 0 1 0 0-6 3 3 0 0 0 0 6Zm0 2c-2.3 0-7 1.2-7 3.5V19h14v-2.5C15 14.2 10.3 13 8 13Zm8 0c-.3 0-.6 0-1 .1 1.2.8 2 2 2 3.4V19h6v-2.5c0-2.3-4.7-3.5-7-3.5Z",
    link: "M14 3v2h3.6l-9.8 9.8 1.4 1.4L19 6.4V10h2V3h-7Zm5 16H5V5h7V3H5a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h14a2 2 0 0 0 2-2v-7h-2v7Z",
    file: "M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8l-6-6Zm0 2.5L17.5 8H14V4.5Z",
    image:
      "M21 19V5a2 2 0 0 0-2-2H5a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h14a2 2 0 0 0 2-2ZM8.5 13.5l2.5 3 3.5-4.5 4.5 6H5l3.5-4.5Z",
    download: "M5 20h14v-2H5v2ZM19 9h-4V3H9v6H5l7 7 7-7Z",
  };

  // ---------------------------------------------------------------------------------------
  // The page's own words: both languages arrive embedded as JSON; nothing is hard-coded here.

  // The server either embeds {"zh_CN": {...}, "en": {...}} in the page, or serves the same
  // at /sandbox/api/strings (see loadStrings).
  let STRINGS = (() => {
    try {
      const data = JSON.parse($("kehou-strings").textContent);
      return data && typeof data === "object" && !Array.isArray(data) ? data : {};
    } catch {
      return {};
    }
  })();

  async function loadStrings() {
    if (LANGS.some((l) => STRINGS[l] && Object.keys(STRINGS[l]).length)) return;
    try {
      const data = await api("/strings");
      const table = data && typeof data.strings === "object" ? data.strings : data;
      if (table && typeof table === "object") STRINGS = table;
    } catch {
      console.warn("kehou sandbox: no page strings; showing their keys");
    }
  }

  // A text the sandbox gives per locale ({"zh_CN": …, "en": …}) or as one string.
  function localized(value) {
    if (value == null) return "";
    if (typeof value !== "object") return String(value);
    return value[lang] ?? value.en ?? value.zh_CN ?? Object.values(value)[0] ?? "";
  }

  function chooseLanguage() {
    const asked = new URLSearchParams(window.location.search).get("lang");
    if (LANGS.includes(asked)) return asked;
    const saved = store.get(STORE_LANG);
    if (LANGS.includes(saved)) return saved;
    const browser = (navigator.languages && navigator.languages[0]) || navigator.language || "";
    return /^zh/i.test(browser) ? "zh_CN" : "en";
  }

  let lang = chooseLanguage();

  function t(key, params) {
    const table = STRINGS[lang] || {};
    let text = table[key] ?? (STRINGS.en || {})[key] ?? key;
    if (params) text = text.replace(/\{(\w+)\}/g, (m, name) => (name in params ? params[name] : m));
    return text;
  }

  const intlLocale = () => (lang === "zh_CN" ? "zh-CN" : "en");

  function formatTime(unix) {
    return new Intl.DateTimeFormat(intlLocale(), { hour: "numeric", minute: "2-digit" }).format(
      new Date(unix * 1000),
    );
  }

  function formatFull(unix) {
    return new Intl.DateTimeFormat(intlLocale(), { dateStyle: "full", timeStyle: "medium" }).format(
      new Date(unix * 1000),
    );
  }

  function dayKey(unix) {
    const d = new Date(unix * 1000);
    return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
  }

  function dayLabel(unix) {
    const d = new Date(unix * 1000);
    const today = new Date();
    const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    if (dayKey(unix) === dayKey(today.getTime() / 1000)) return t("today");
    if (dayKey(unix) === dayKey(yesterday.getTime() / 1000)) return t("yesterday");
    const options = { month: "long", day: "numeric", weekday: "short" };
    if (d.getFullYear() !== today.getFullYear()) options.year = "numeric";
    return new Intl.DateTimeFormat(intlLocale(), options).format(d);
  }

  function shortDate(unix) {
    if (dayKey(unix) === dayKey(Date.now() / 1000)) return formatTime(unix);
    return new Intl.DateTimeFormat(intlLocale(), { month: "numeric", day: "numeric" }).format(
      new Date(unix * 1000),
    );
  }

  function formatSize(bytes) {
    if (!Number.isFinite(bytes)) return "";
    const units = ["B", "KB", "MB", "GB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    const digits = unit === 0 || value >= 10 ? 0 : 1;
    return `${new Intl.NumberFormat(intlLocale(), { maximumFractionDigits: digits }).format(value)} ${units[unit]}`;
  }

  function applyStaticStrings() {
    document.documentElement.lang = lang === "zh_CN" ? "zh-CN" : "en";
    document.title = t("title");
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    for (const node of document.querySelectorAll("[data-i18n-aria]"))
      node.setAttribute("aria-label", t(node.dataset.i18nAria));
    for (const node of document.querySelectorAll("[data-i18n-title]"))
      node.setAttribute("title", t(node.dataset.i18nTitle));
    for (const node of document.querySelectorAll("[data-i18n-placeholder]"))
      node.setAttribute("placeholder", t(node.dataset.i18nPlaceholder));
    for (const button of el.langSwitch.querySelectorAll("[data-lang]"))
      button.setAttribute("aria-pressed", String(button.dataset.lang === lang));
  }

  function setLanguage(next) {
    if (!LANGS.includes(next) || next === lang) return;
    lang = next;
    store.set(STORE_LANG, next);
    const url = new URL(window.location.href);
    url.searchParams.set("lang", next);
    window.history.replaceState(null, "", url);
    applyStaticStrings();
    for (const chat of state.chats.values()) chat.nodes.clear();
    buildSidebar();
    renderChat({ keepScroll: true });
  }

  // ---------------------------------------------------------------------------------------
  // State

  const state = {
    bot: null, // {id, username, first_name}
    personas: [],
    byKey: new Map(),
    activeKey: null,
    chats: new Map(), // chat_id → Chat
    cursor: null, // the last event seq seen
    pollMode: "all", // "all": one poll for every chat; "chat": only the open chat's events
    pollModeConfirmed: false,
    pollGen: 0,
    pollAbort: null,
    online: true,
    pending: new Map(), // "chat:message:data" → timer, for pressed inline buttons
    stickToBottom: true,
    keyboardOpen: true,
    keyboardSig: null,
    commands: { supported: true, list: [], forKey: null },
    sendChain: Promise.resolve(),
    attachments: [], // [{file, url}]: photos chosen in the composer, sent with the next Send
  };

  function chatFor(chatId) {
    let chat = state.chats.get(chatId);
    if (!chat) {
      chat = {
        id: chatId,
        messages: new Map(),
        loaded: false,
        loadedSeq: 0,
        recent: [],
        unread: 0,
        action: null,
        actionTimer: null,
        nodes: new Map(), // message_id / day key → {sig, node}
      };
      state.chats.set(chatId, chat);
    }
    return chat;
  }

  const activePersona = () => state.byKey.get(state.activeKey) || null;
  const activeChat = () => {
    const persona = activePersona();
    return persona ? chatFor(persona.chat_id) : null;
  };
  const personasOf = (chatId) => state.personas.filter((p) => p.chat_id === chatId);
  const sortedMessages = (chat) => [...chat.messages.values()].sort((a, b) => a.message_id - b.message_id);

  function isOwn(msg, persona) {
    if (!persona || msg.outgoing) return false;
    return Boolean(msg.from && msg.from.id === persona.user_id);
  }

  function senderName(msg) {
    if (msg.outgoing || (msg.from && msg.from.is_bot)) return (state.bot && state.bot.first_name) || msg.from?.first_name || "";
    const from = msg.from || {};
    return [from.first_name, from.last_name].filter(Boolean).join(" ");
  }

  // ---------------------------------------------------------------------------------------
  // The page API

  async function api(path, { method = "GET", body, signal } = {}) {
    const response = await fetch(API + path, {
      method,
      signal,
      cache: "no-store",
      headers: body ? { "Content-Type": "application/json" } : undefined,
      body: body ? JSON.stringify(body) : undefined,
    });
    if (!response.ok) {
      const error = new Error(`${method} ${path}: HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return response.json();
  }

  async function loadInfo() {
    try {
      const info = await api("/info");
      state.bot = info.bot || null;
    } catch {
      state.bot = null;
    }
    renderHeader();
  }

  async function loadPersonas() {
    el.personaState.textContent = t("loading");
    el.personaState.hidden = false;
    try {
      const data = await api("/personas");
      state.personas = Array.isArray(data.personas) ? data.personas : [];
      state.byKey = new Map(state.personas.map((p) => [p.key, p]));
      buildSidebar();
      return true;
    } catch {
      state.personas = [];
      state.byKey = new Map();
      buildSidebar();
      el.personaState.replaceChildren(
        h("p", { text: t("personas_error") }),
        h("button", { type: "button", class: "pill-button", text: t("retry"), onclick: () => boot() }),
      );
      el.personaState.hidden = false;
      return false;
    }
  }

  async function loadHistory(chatId) {
    const data = await api(`/chats/${encodeURIComponent(chatId)}/messages`);
    const chat = chatFor(chatId);
    chat.messages = new Map((data.messages || []).map((m) => [m.message_id, m]));
    chat.loaded = true;
    chat.loadedSeq = Number(data.seq) || 0;
    // Events the poll delivered while this request was under way are newer than the history.
    for (const event of chat.recent) if (event.seq > chat.loadedSeq) applyEvent(chat, event);
    if (state.cursor == null) state.cursor = chat.loadedSeq;
    return chat;
  }

  async function loadCommands(persona) {
    if (!state.commands.supported || !persona) return;
    const key = persona.key;
    try {
      const query = new URLSearchParams({ user_id: String(persona.user_id) });
      const data = await api(`/chats/${encodeURIComponent(persona.chat_id)}/commands?${query}`);
      if (state.activeKey !== key) return;
      state.commands.list = Array.isArray(data.commands) ? data.commands : [];
      state.commands.forKey = key;
    } catch (error) {
      // Optional: a sandbox without the endpoint simply has no "/" menu.
      if (error.status === 404 || error.status === 405) state.commands.supported = false;
      state.commands.list = [];
    }
    renderCommandsButton();
  }

  // ---------------------------------------------------------------------------------------
  // Live updates: one long poll at a time, restarted with a backoff after errors.

  function restartPoll() {
    state.pollGen += 1;
    if (state.pollAbort) state.pollAbort.abort();
    pollLoop(state.pollGen);
  }

  async function pollLoop(gen) {
    let backoff = 1000;
    while (gen === state.pollGen) {
      const persona = activePersona();
      if (state.cursor == null || (state.pollMode === "chat" && !persona)) return; // restarted later
      // After an error, ask without waiting: the banner goes as soon as the sandbox is back.
      const wait = state.online ? POLL_TIMEOUT_S : 0;
      const query = new URLSearchParams({ after: String(state.cursor), timeout: String(wait) });
      if (state.pollMode === "chat") query.set("chat_id", String(persona.chat_id));
      const controller = new AbortController();
      state.pollAbort = controller;
      const watchdog = setTimeout(() => controller.abort(), (POLL_TIMEOUT_S + 15) * 1000);
      const started = performance.now();
      try {
        const response = await fetch(`${API}/events?${query}`, { signal: controller.signal, cache: "no-store" });
        if (gen !== state.pollGen) return;
        if (!response.ok) {
          if (state.pollMode === "all" && !state.pollModeConfirmed) {
            // This sandbox wants a chat_id: watch the open chat only.
            state.pollMode = "chat";
            continue;
          }
          throw new Error(`events: HTTP ${response.status}`);
        }
        const data = await response.json();
        if (gen !== state.pollGen) return;
        state.pollModeConfirmed = true;
        backoff = 1000;
        const wasOffline = !state.online;
        setOnline(true);
        handlePoll(data);
        if (wasOffline) resync();
        const events = Array.isArray(data.events) ? data.events : [];
        // A server that answers at once with nothing must not be hammered.
        if (!events.length && performance.now() - started < 1000) await sleep(1000);
      } catch {
        if (gen !== state.pollGen) return;
        setOnline(false);
        await sleep(backoff + Math.random() * 300);
        backoff = Math.min(backoff * 2, 15000);
      } finally {
        clearTimeout(watchdog);
      }
    }
  }

  function handlePoll(data) {
    const events = (Array.isArray(data.events) ? data.events : []).slice().sort((a, b) => a.seq - b.seq);
    if (typeof data.seq === "number" && data.seq < state.cursor) {
      // The sandbox restarted: its counter began again. Start over.
      state.cursor = data.seq;
      resync();
      return;
    }
    const touched = new Set();
    let personasChanged = false;
    for (const event of events) {
      if (event.type === "persona") personasChanged = true; // e.g. the new parent linked
      const chatId = event.chat_id ?? event.message?.chat?.id;
      if (chatId == null) continue;
      const known = state.chats.has(chatId) || personasOf(chatId).length > 0;
      if (!known) continue;
      const chat = chatFor(chatId);
      chat.recent.push(event);
      if (chat.recent.length > RECENT_EVENTS) chat.recent.splice(0, chat.recent.length - RECENT_EVENTS);
      if (chat.loaded && event.seq <= chat.loadedSeq) continue;
      applyEvent(chat, event, true);
      touched.add(chatId);
    }
    const last = events.length ? events[events.length - 1].seq : data.seq;
    if (typeof last === "number") state.cursor = Math.max(state.cursor, last);
    const active = activeChat();
    for (const chatId of touched) {
      updatePersonaItems(chatId);
      if (active && active.id === chatId) renderChat();
    }
    if (personasChanged) refreshPersonas();
  }

  async function refreshPersonas() {
    // The list changed while the page is open: redraw it in place, without a loading state.
    try {
      const data = await api("/personas");
      if (!Array.isArray(data.personas)) return;
      state.personas = data.personas;
      state.byKey = new Map(state.personas.map((p) => [p.key, p]));
      buildSidebar();
      renderHeader();
    } catch {
      // The next event or a resync will try again.
    }
  }

  function applyEvent(chat, event, live = false) {
    const active = activeChat();
    const isActive = active && active.id === chat.id;
    switch (event.type) {
      case "message":
      case "edit": {
        const msg = event.message;
        if (!msg) return;
        const isNew = !chat.messages.has(msg.message_id);
        chat.messages.set(msg.message_id, msg);
        if (event.type === "edit") clearPending(chat.id, msg.message_id);
        if (msg.outgoing) setAction(chat, null);
        if (live && isNew && event.type === "message") {
          const persona = isActive ? activePersona() : personasOf(chat.id)[0];
          if (!isOwn(msg, persona)) {
            if (isActive && !document.hidden && state.stickToBottom) chat.unread = 0;
            else chat.unread += 1;
          }
        }
        if (live && (msg.migrate_to_chat_id || msg.migrate_from_chat_id)) setTimeout(resync, 500);
        return;
      }
      case "delete":
        chat.messages.delete(event.message_id);
        clearPending(chat.id, event.message_id);
        return;
      case "chat_action":
        if (live) setAction(chat, event.action || "typing");
        return;
      case "callback_answer": {
        const persona = activePersona();
        if (!live || !persona || !isActive) return;
        if (event.user_id != null && event.user_id !== persona.user_id) return;
        clearPending(chat.id, event.message_id ?? undefined);
        if (event.text) {
          if (event.show_alert) showAlert(event.text);
          else toast(event.text);
        }
        if (event.url && !openBotLink(event.url)) window.open(event.url, "_blank", "noopener");
        return;
      }
      default:
        return;
    }
  }

  function setAction(chat, action) {
    clearTimeout(chat.actionTimer);
    chat.action = action;
    if (action) {
      chat.actionTimer = setTimeout(() => {
        chat.action = null;
        if (activeChat() === chat) renderHeader();
      }, ACTION_MS);
    }
    if (activeChat() === chat) renderHeader();
  }

  function setOnline(online) {
    if (state.online === online) return;
    state.online = online;
    el.conn.hidden = online;
  }

  let resyncing = null;
  function resync() {
    // After a restart or an outage: personas, then every chat's history, again.
    if (resyncing) return resyncing;
    resyncing = (async () => {
      try {
        await loadPersonas();
        await loadInfo();
        const persona = activePersona();
        if (!persona) {
          state.activeKey = null;
          showPlaceholder();
          el.app.dataset.view = "list";
        }
        for (const chat of state.chats.values()) {
          chat.loaded = false;
          chat.recent = []; // events of the sandbox before the restart mean nothing now
        }
        if (persona) {
          await loadHistory(persona.chat_id).catch(() => {});
          renderChat({ keepScroll: true });
        }
        await prefetchHistories();
      } finally {
        resyncing = null;
      }
    })();
    return resyncing;
  }

  async function prefetchHistories() {
    // One at a time: previews for the sidebar, and instant switching.
    for (const chatId of new Set(state.personas.map((p) => p.chat_id))) {
      const chat = chatFor(chatId);
      if (chat.loaded) continue;
      try {
        await loadHistory(chatId);
      } catch {
        continue;
      }
      updatePersonaItems(chatId);
      if (activeChat() === chat) renderChat({ keepScroll: true });
    }
  }

  // ---------------------------------------------------------------------------------------
  // The sidebar

  const AVATAR_COLOURS = 7;

  function hashOf(text) {
    let hash = 0;
    for (const ch of String(text)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
    return hash;
  }

  function initials(label) {
    const text = String(label || "").trim();
    if (!text) return "?";
    if (/^[\u3400-\u9fff\uf900-\ufaff]/.test(text)) return text[0];
    const words = text.split(/\s+/).filter(Boolean);
    return words
      .slice(0, 2)
      .map((w) => [...w][0].toUpperCase())
      .join("");
  }

  function fillAvatar(node, persona) {
    node.className = `avatar colour-${hashOf(persona.key) % AVATAR_COLOURS}`;
    node.replaceChildren(persona.kind === "group" ? svgIcon(ICON.group) : initials(persona.label));
  }

  function previewOf(chat) {
    if (!chat || !chat.messages.size) return null;
    const msgs = sortedMessages(chat);
    const msg = msgs[msgs.length - 1];
    let text = msg.text || msg.caption || "";
    if (!text && msg.media_group_id != null) {
      const captioned = msgs.find((m) => m.media_group_id === msg.media_group_id && m.caption);
      text = captioned ? captioned.caption : t("album");
    }
    if (!text && isService(msg)) text = serviceText(msg);
    if (!text && msg.photo) text = t("photo");
    if (!text && msg.document) text = msg.document_name || msg.document.file_name || t("file");
    return { text: text.replace(/\s+/g, " "), date: msg.date };
  }

  const personaNodes = new Map(); // key → {button, time, preview, badge}

  function buildSidebar() {
    personaNodes.clear();
    el.personaGroups.replaceChildren();
    if (!state.personas.length) {
      el.personaState.textContent = t("no_personas");
      el.personaState.hidden = false;
      return;
    }
    el.personaState.hidden = true;
    const sections = [
      ["private", t("section_private")],
      ["group", t("section_group")],
    ];
    for (const [kind, heading] of sections) {
      const members = state.personas.filter((p) => (kind === "group" ? p.kind === "group" : p.kind !== "group"));
      if (!members.length) continue;
      const headingId = `section-${kind}`;
      const list = h("ul", { class: "persona-list", "aria-labelledby": headingId });
      for (const persona of members) list.append(h("li", {}, buildPersonaItem(persona)));
      el.personaGroups.append(h("section", { class: "persona-section" }, h("h2", { class: "section-title", id: headingId, text: heading }), list));
    }
    for (const chatId of new Set(state.personas.map((p) => p.chat_id))) updatePersonaItems(chatId);
  }

  function buildPersonaItem(persona) {
    const avatar = h("span", { "aria-hidden": "true" });
    fillAvatar(avatar, persona);
    const time = h("span", { class: "persona-time" });
    const preview = h("span", { class: "persona-preview" });
    const badge = h("span", { class: "badge", hidden: true });
    const button = h(
      "button",
      {
        type: "button",
        class: "persona",
        "data-testid": `persona-${persona.key}`,
        "data-key": persona.key,
        onclick: () => selectPersona(persona.key, { focusInput: !NARROW.matches }),
      },
      avatar,
      h(
        "span",
        { class: "persona-text" },
        h("span", { class: "persona-line" }, h("span", { class: "persona-label", text: persona.label }), time),
        localized(persona.description) ? h("span", { class: "persona-desc", text: localized(persona.description) }) : null,
        h("span", { class: "persona-line" }, preview, badge),
      ),
    );
    personaNodes.set(persona.key, { button, time, preview, badge });
    return button;
  }

  function updatePersonaItems(chatId) {
    const chat = state.chats.get(chatId);
    const info = previewOf(chat);
    for (const persona of personasOf(chatId)) {
      const nodes = personaNodes.get(persona.key);
      if (!nodes) continue;
      const active = persona.key === state.activeKey;
      if (active) nodes.button.setAttribute("aria-current", "true");
      else nodes.button.removeAttribute("aria-current");
      nodes.time.textContent = info ? shortDate(info.date) : "";
      nodes.preview.textContent = info ? info.text : "";
      const unread = chat && !active ? chat.unread : 0;
      nodes.badge.hidden = !unread;
      nodes.badge.textContent = unread > 99 ? "99+" : String(unread);
      nodes.badge.setAttribute("aria-label", t("unread", { count: unread }));
    }
  }

  function markActiveInSidebar() {
    for (const [key, nodes] of personaNodes) {
      if (key === state.activeKey) nodes.button.setAttribute("aria-current", "true");
      else nodes.button.removeAttribute("aria-current");
    }
  }

  // ---------------------------------------------------------------------------------------
  // Choosing a persona

  function hashPersona() {
    const match = /(?:^#|&)persona=([^&]+)/.exec(window.location.hash);
    return match ? decodeURIComponent(match[1]) : null;
  }

  function setHash(key) {
    const url = new URL(window.location.href);
    url.hash = key ? `persona=${encodeURIComponent(key)}` : "";
    if (url.href !== window.location.href) window.history.replaceState(null, "", key ? url : url.href.replace(/#$/, ""));
  }

  async function selectPersona(key, { focusInput = false } = {}) {
    const persona = state.byKey.get(key);
    if (!persona) return;
    const switching = key !== state.activeKey;
    state.activeKey = key;
    store.set(STORE_PERSONA, key);
    setHash(key);
    el.app.dataset.view = "chat";
    const chat = chatFor(persona.chat_id);
    chat.unread = 0;
    markActiveInSidebar();
    updatePersonaItems(persona.chat_id);
    personaNodes.get(key)?.button.scrollIntoView({ block: "nearest" });
    if (switching) {
      el.toasts.replaceChildren(); // answers to another chat's buttons do not follow
      state.keyboardOpen = true;
      state.keyboardSig = null;
      closeCommandsMenu();
      state.commands.list = [];
      renderCommandsButton();
      clearAttachments();
    }
    showChat();
    renderChat({ toBottom: true, quiet: true });
    if (focusInput) el.input.focus({ preventScroll: true });
    try {
      await loadHistory(persona.chat_id);
    } catch {
      if (state.activeKey === key) toast(t("history_error"), "error");
      return;
    }
    if (state.activeKey !== key) return;
    updatePersonaItems(persona.chat_id);
    renderChat({ toBottom: switching, quiet: switching });
    if (state.pollMode === "chat") {
      state.cursor = chat.loadedSeq;
      restartPoll();
    } else if (switching && !state.pollAbort) {
      restartPoll();
    }
    if (switching) loadCommands(persona);
  }

  function showList() {
    el.app.dataset.view = "list";
    setHash(null);
    const nodes = personaNodes.get(state.activeKey);
    if (nodes) nodes.button.focus({ preventScroll: false });
  }

  function showPlaceholder() {
    el.placeholder.hidden = false;
    el.head.hidden = true;
    el.wrap.hidden = true;
    el.composerArea.hidden = true;
  }

  function showChat() {
    el.placeholder.hidden = true;
    el.head.hidden = false;
    el.wrap.hidden = false;
    el.composerArea.hidden = false;
    autosize();
  }

  // ---------------------------------------------------------------------------------------
  // The chat

  function renderHeader() {
    const persona = activePersona();
    if (state.bot) {
      el.botName.textContent = state.bot.first_name || "";
      el.botUsername.textContent = state.bot.username ? `@${state.bot.username}` : "";
      el.botChip.hidden = false;
    } else {
      el.botChip.hidden = true;
    }
    if (!persona) return;
    fillAvatar(el.avatar, persona);
    el.avatar.setAttribute("aria-hidden", "true");
    el.title.textContent = persona.label;
    const chat = chatFor(persona.chat_id);
    if (chat.action) {
      const key =
        /photo/.test(chat.action) ? "sending_photo" : /document|video|voice|audio/.test(chat.action) ? "sending_file" : "typing";
      el.subtitle.replaceChildren(h("span", { class: "typing-dots", "aria-hidden": "true" }, h("i"), h("i"), h("i")), t(key));
      el.subtitle.classList.add("is-active");
      el.subtitle.removeAttribute("title");
    } else {
      const botName = (state.bot && state.bot.first_name) || t("bot");
      const fallback = persona.kind === "group" ? t("group_chat") : t("private_chat_with", { bot: botName });
      el.subtitle.textContent = localized(persona.description) || fallback;
      el.subtitle.title = el.subtitle.textContent;
      el.subtitle.classList.remove("is-active");
    }
  }

  function isNearBottom() {
    const list = el.list;
    return list.scrollHeight - list.scrollTop - list.clientHeight < 48;
  }

  function scrollToBottom() {
    el.list.scrollTop = el.list.scrollHeight;
    state.stickToBottom = true;
    el.jump.hidden = true;
  }

  function renderChat({ toBottom = false, keepScroll = false, quiet = false } = {}) {
    const persona = activePersona();
    if (!persona) return;
    renderHeader();
    const chat = chatFor(persona.chat_id);
    const stick = state.stickToBottom;
    const lastBefore = inner.lastElementChild?.dataset.messageId;
    if (quiet) el.list.setAttribute("aria-live", "off");

    const nodes = [];
    let lastDay = null;
    let prev = null;
    const msgs = sortedMessages(chat);
    for (let i = 0; i < msgs.length; i += 1) {
      const msg = msgs[i];
      // The messages of an album (one media_group_id, one after another) are one bubble.
      const items = [msg];
      while (msg.media_group_id != null && i + 1 < msgs.length && msgs[i + 1].media_group_id === msg.media_group_id) {
        i += 1;
        items.push(msgs[i]);
      }
      const day = dayKey(msg.date);
      if (day !== lastDay) {
        nodes.push(cached(chat, `day:${day}`, day, () => h("div", { class: "day-separator", role: "separator" }, h("span", { text: dayLabel(msg.date) }))));
        lastDay = day;
        prev = null;
      }
      const showName = persona.kind === "group" && !isOwn(msg, persona) && !(prev && sameSender(prev, msg));
      const album = items.length > 1;
      const sig = `${JSON.stringify(items)}|${showName}|${pendingSig(chat.id, msg.message_id)}`;
      const key = album ? `g:${msg.media_group_id}` : `m:${msg.message_id}`;
      const appear = !quiet && !chat.nodes.has(key); // only what arrives live fades in, not edits
      nodes.push(
        cached(chat, key, sig, () => (album ? albumNode(items, persona, showName, appear) : messageNode(msg, persona, showName, appear))),
      );
      prev = items[items.length - 1];
    }
    const focus = focusedInMessage();
    reconcile(inner, nodes);
    if (focus) restoreFocus(focus);
    if (quiet) requestAnimationFrame(() => el.list.setAttribute("aria-live", "polite"));

    el.empty.hidden = !(chat.loaded && chat.messages.size === 0);
    renderReplyKeyboard(chat);

    const lastAfter = inner.lastElementChild?.dataset.messageId;
    if (toBottom || stick) scrollToBottom();
    else if (lastAfter && lastAfter !== lastBefore) el.jump.hidden = false;
  }

  // A message re-rendered (edited, or a button pressed) keeps keyboard focus on the same button.
  function focusedInMessage() {
    const active = document.activeElement;
    const message = active && active !== inner && inner.contains(active) ? active.closest("[data-message-id]") : null;
    if (!message) return null;
    const buttons = [...message.querySelectorAll("button, a[href]")];
    return { id: message.dataset.messageId, index: buttons.indexOf(active), callback: active.dataset.callback };
  }

  function restoreFocus({ id, index, callback }) {
    if (inner.contains(document.activeElement)) return;
    const message = inner.querySelector(`[data-message-id="${CSS.escape(id)}"]`);
    if (!message) return;
    const buttons = [...message.querySelectorAll("button, a[href]")];
    const target =
      (callback != null && buttons.find((b) => b.dataset.callback === callback)) || buttons[index] || buttons[0];
    if (target) target.focus({ preventScroll: true });
  }

  function sameSender(a, b) {
    if (a.outgoing || b.outgoing) return Boolean(a.outgoing && b.outgoing);
    return a.from?.id === b.from?.id;
  }

  function cached(chat, key, sig, build) {
    const entry = chat.nodes.get(key);
    if (entry && entry.sig === sig) return entry.node;
    const node = build();
    chat.nodes.set(key, { sig, node });
    return node;
  }

  function reconcile(parent, wanted) {
    // Remove what went, insert what came; nodes that stay are never moved, so focus, images
    // and the scroll position survive updates.
    const keep = new Set(wanted);
    for (const child of [...parent.children]) if (!keep.has(child)) child.remove();
    let current = parent.firstChild;
    for (const node of wanted) {
      if (node === current) current = current.nextSibling;
      else parent.insertBefore(node, current);
    }
  }

  function messageNode(msg, persona, showName, appear = false) {
    if (isService(msg)) {
      return h("div", { class: "service", "data-testid": "message", "data-message-id": msg.message_id }, h("span", { text: serviceText(msg) }));
    }
    const own = isOwn(msg, persona);
    const bubble = h("div", { class: "bubble" });
    if (showName) {
      const colour = msg.outgoing ? "bot" : `colour-${hashOf(String(msg.from?.id)) % AVATAR_COLOURS}`;
      bubble.append(h("div", { class: `sender ${colour}`, text: senderName(msg) }));
    }
    if (msg.reply_to_message) bubble.append(replyQuote(msg.reply_to_message));

    let hasMedia = false;
    if (msg.photo) {
      bubble.append(photoNode(msg));
      hasMedia = true;
    }
    if (msg.document) {
      bubble.append(documentNode(msg));
    }

    const meta = metaNode(msg);
    const hasText = Boolean(msg.html || msg.text || msg.caption);
    if (hasText) {
      const rich = h("div", { class: "rich" });
      if (msg.html != null) rich.innerHTML = msg.html; // rendered and escaped by the sandbox
      else rich.textContent = msg.text || msg.caption || "";
      for (const link of rich.querySelectorAll("a[href]")) {
        link.target = "_blank";
        link.rel = "noopener noreferrer";
      }
      // An invisible copy of the time keeps the last line clear of the real one.
      rich.append(h("span", { class: "meta-spacer", "aria-hidden": "true" }, meta.cloneNode(true)));
      bubble.append(rich);
    } else if (!msg.photo && !msg.document) {
      bubble.append(h("div", { class: "rich unsupported", text: t("unsupported_message") }));
    }
    bubble.append(meta);
    if (hasMedia && !hasText) bubble.classList.add("media-only");
    if (msg.photo) bubble.classList.add("has-photo");

    const wrapper = h(
      "div",
      {
        class: `msg ${own ? "out" : "in"}${msg.outgoing ? " from-bot" : ""}${appear ? " appear" : ""}`,
        "data-testid": "message",
        "data-message-id": msg.message_id,
        "data-outgoing": msg.outgoing ? "true" : "false",
      },
      bubble,
    );
    const keyboard = msg.reply_markup && msg.reply_markup.inline_keyboard;
    if (Array.isArray(keyboard) && keyboard.length) {
      // As in Telegram on a phone: a message with buttons takes the chat's full message width.
      wrapper.classList.add("has-keyboard");
      wrapper.append(inlineKeyboard(msg, keyboard));
    }
    if (appear) wrapper.addEventListener("animationend", () => wrapper.classList.remove("appear"), { once: true });
    return wrapper;
  }

  function metaNode(msg) {
    const meta = h("span", { class: "meta" });
    if (msg.edit_date) meta.append(h("span", { class: "edited", text: t("edited") }));
    if (msg.date) meta.append(h("time", { datetime: new Date(msg.date * 1000).toISOString(), title: formatFull(msg.date), text: formatTime(msg.date) }));
    return meta;
  }

  function replyQuote(reply) {
    let text = reply.text || reply.caption || "";
    if (!text && reply.photo) text = t("photo");
    if (!text && reply.document) text = reply.document.file_name || t("file");
    return h(
      "button",
      {
        type: "button",
        class: "reply-quote",
        onclick: () => {
          const id = String(reply.message_id);
          const target = inner.querySelector(`[data-message-id="${id}"], [data-album-ids~="${id}"]`);
          if (!target) return;
          target.scrollIntoView({ block: "center", behavior: "smooth" });
          target.classList.remove("flash");
          void target.offsetWidth;
          target.classList.add("flash");
        },
      },
      h("span", { class: "reply-name", text: senderName(reply) }),
      h("span", { class: "reply-text", text }),
    );
  }

  function photoNode(msg) {
    const sizes = Array.isArray(msg.photo) ? msg.photo : [];
    const largest = sizes[sizes.length - 1] || {};
    const width = largest.width || 4;
    const height = largest.height || 3;
    if (!msg.photo_url) {
      return h("div", { class: "photo photo-missing", style: `aspect-ratio: ${width} / ${height}` }, svgIcon(ICON.image));
    }
    const img = h("img", { src: msg.photo_url, alt: msg.caption || t("photo"), width, height, loading: "lazy", decoding: "async" });
    img.style.aspectRatio = `${width} / ${height}`;
    return h("button", { type: "button", class: "photo", "aria-label": t("open_photo"), title: t("open_photo"), onclick: () => openPhoto(msg) }, img);
  }

  // Rows of an album's grid, as Telegram lays out up to ten photos on a phone: 1, 2, 1+2, 2+2,
  // 2+3, 3+3, then rows of two and three with the rows of three last.
  function albumRows(count) {
    const rows = { 1: [1], 2: [2], 3: [1, 2], 4: [2, 2], 5: [2, 3], 6: [3, 3], 7: [2, 2, 3], 8: [2, 3, 3], 9: [3, 3, 3], 10: [2, 2, 3, 3] };
    return rows[Math.min(Math.max(count, 1), MAX_PHOTOS)];
  }

  function albumNode(items, persona, showName, appear = false) {
    const first = items[0];
    const last = items[items.length - 1];
    const own = isOwn(first, persona);
    const bubble = h("div", { class: "bubble has-photo has-album" });
    if (showName) {
      const colour = first.outgoing ? "bot" : `colour-${hashOf(String(first.from?.id)) % AVATAR_COLOURS}`;
      bubble.append(h("div", { class: `sender ${colour}`, text: senderName(first) }));
    }
    if (first.reply_to_message) bubble.append(replyQuote(first.reply_to_message));
    const photos = items.filter((m) => m.photo);
    const captioned = items.filter((m) => m.caption);
    // Telegram shows an album's only caption under the whole album, and for every photo.
    const shared = captioned.length === 1 ? captioned[0] : null;
    const grid = h("div", { class: "album-grid", "data-testid": "album", "data-count": photos.length });
    let index = 0;
    for (const size of albumRows(photos.length)) {
      for (let k = 0; k < size && index < photos.length; k += 1, index += 1) {
        const item = photos[index];
        const label = t("album_photo", { number: index + 1, count: photos.length });
        const tile = item.photo_url
          ? h(
              "button",
              {
                type: "button",
                class: `photo album-tile row-of-${size}`,
                "aria-label": label,
                title: label,
                "data-testid": "album-photo",
                onclick: () => openPhoto(item, item.caption ? item : shared || item),
              },
              h("img", { src: item.photo_url, alt: item.caption || label, loading: "lazy", decoding: "async" }),
            )
          : h("div", { class: `photo photo-missing album-tile row-of-${size}` }, svgIcon(ICON.image));
        tile.style.gridColumn = `span ${6 / size}`;
        grid.append(tile);
      }
    }
    bubble.append(grid);
    const meta = metaNode(last);
    for (const item of captioned) {
      const rich = h("div", { class: "rich" });
      if (item.html != null) rich.innerHTML = item.html; // rendered and escaped by the sandbox
      else rich.textContent = item.caption;
      for (const link of rich.querySelectorAll("a[href]")) {
        link.target = "_blank";
        link.rel = "noopener noreferrer";
      }
      if (item === captioned[captioned.length - 1]) rich.append(h("span", { class: "meta-spacer", "aria-hidden": "true" }, meta.cloneNode(true)));
      bubble.append(rich);
    }
    bubble.append(meta);
    if (!captioned.length) bubble.classList.add("media-only");
    const wrapper = h(
      "div",
      {
        class: `msg album ${own ? "out" : "in"}${first.outgoing ? " from-bot" : ""}${appear ? " appear" : ""}`,
        "data-testid": "message",
        "data-message-id": first.message_id,
        "data-album-ids": items.map((m) => m.message_id).join(" "),
        "data-outgoing": first.outgoing ? "true" : "false",
      },
      bubble,
    );
    if (appear) wrapper.addEventListener("animationend", () => wrapper.classList.remove("appear"), { once: true });
    return wrapper;
  }

  function documentNode(msg) {
    const doc = msg.document || {};
    const name = msg.document_name || doc.file_name || t("file");
    const ext = (/\.([a-z0-9]{1,4})$/i.exec(name) || [])[1];
    const size = formatSize(doc.file_size);
    const body = [
      h("span", { class: "doc-icon", "aria-hidden": "true" }, svgIcon(ICON.file), ext ? h("span", { class: "doc-ext", text: ext.toUpperCase() }) : null),
      h(
        "span",
        { class: "doc-text" },
        h("span", { class: "doc-name", text: name }),
        h("span", { class: "doc-info" }, size ? `${size} · ` : "", h("span", { class: "doc-download" }, svgIcon(ICON.download, "icon small"), t("download"))),
      ),
    ];
    if (!msg.document_url) return h("div", { class: "doc-card" }, body);
    return h("a", { class: "doc-card", href: msg.document_url, download: name, target: "_blank", rel: "noopener" }, body);
  }

  function isService(msg) {
    return Boolean(
      msg.new_chat_members || msg.left_chat_member || msg.group_chat_created || msg.supergroup_chat_created ||
        msg.migrate_to_chat_id || msg.migrate_from_chat_id || msg.pinned_message,
    );
  }

  function serviceText(msg) {
    const name = (user) => [user?.first_name, user?.last_name].filter(Boolean).join(" ");
    if (msg.migrate_to_chat_id || msg.migrate_from_chat_id) return t("service_migrated");
    if (msg.group_chat_created || msg.supergroup_chat_created) return t("service_created");
    if (msg.new_chat_members) return t("service_joined", { name: msg.new_chat_members.map(name).join(", ") });
    if (msg.left_chat_member) return t("service_left", { name: name(msg.left_chat_member) });
    return t("service_pinned", { name: name(msg.from) });
  }

  // ---------------------------------------------------------------------------------------
  // Inline keyboards

  const pendingKey = (chatId, messageId, data) => `${chatId}:${messageId}:${data}`;

  function pendingSig(chatId, messageId) {
    const prefix = `${chatId}:${messageId}:`;
    return [...state.pending.keys()].filter((k) => k.startsWith(prefix)).join(",");
  }

  function clearPending(chatId, messageId) {
    const prefix = messageId == null ? `${chatId}:` : `${chatId}:${messageId}:`;
    let changed = false;
    for (const [key, timer] of state.pending) {
      if (!key.startsWith(prefix)) continue;
      clearTimeout(timer);
      state.pending.delete(key);
      changed = true;
    }
    if (changed && activeChat()?.id === chatId) renderChat({ keepScroll: true });
  }

  function inlineKeyboard(msg, rows) {
    const chatId = msg.chat?.id;
    const keyboard = h("div", { class: "inline-keyboard" });
    for (const row of rows) {
      const line = h("div", { class: "inline-row" });
      for (const button of row) line.append(inlineButton(msg, chatId, button));
      keyboard.append(line);
    }
    return keyboard;
  }

  function inlineButton(msg, chatId, button) {
    const label = h("span", { class: "inline-label", text: button.text });
    if (button.url) {
      return h(
        "a",
        {
          class: "inline-button is-link",
          href: button.url,
          target: "_blank",
          rel: "noopener noreferrer",
          title: button.url,
          "data-testid": "inline-button",
          onclick: (event) => {
            if (openBotLink(button.url)) event.preventDefault();
          },
        },
        label,
        svgIcon(ICON.link, "icon corner"),
      );
    }
    if (button.callback_data != null) {
      const pending = state.pending.has(pendingKey(chatId, msg.message_id, button.callback_data));
      return h(
        "button",
        {
          type: "button",
          class: `inline-button${pending ? " is-pending" : ""}`,
          "data-testid": "inline-button",
          "data-callback": button.callback_data,
          "aria-busy": pending ? "true" : null,
          onclick: () => press(msg, button),
        },
        label,
        pending ? h("span", { class: "spinner small", "aria-hidden": "true" }) : null,
      );
    }
    return h("button", { type: "button", class: "inline-button", disabled: true, title: t("unsupported_button"), "data-testid": "inline-button" }, label);
  }

  async function press(msg, button) {
    const persona = activePersona();
    if (!persona) return;
    const chatId = persona.chat_id;
    const key = pendingKey(chatId, msg.message_id, button.callback_data);
    if (state.pending.has(key)) return;
    state.pending.set(key, setTimeout(() => {
      state.pending.delete(key);
      if (activeChat()?.id === chatId) renderChat({ keepScroll: true });
    }, PRESS_MS));
    renderChat({ keepScroll: true });
    try {
      await api(`/chats/${encodeURIComponent(chatId)}/press`, {
        method: "POST",
        body: { user_id: persona.user_id, message_id: msg.message_id, data: button.callback_data },
      });
    } catch {
      clearTimeout(state.pending.get(key));
      state.pending.delete(key);
      renderChat({ keepScroll: true });
      toast(t("press_failed"), "error");
    }
  }

  // A t.me link to this bot does what Telegram does: open the private chat and send /start.
  function openBotLink(href) {
    let url;
    try {
      url = new URL(href, window.location.href);
    } catch {
      return false;
    }
    const username = state.bot && state.bot.username;
    if (!username || !/^(www\.)?(t|telegram)\.me$/i.test(url.hostname)) return false;
    if (url.pathname.replace(/^\/+|\/+$/g, "").toLowerCase() !== username.toLowerCase()) return false;
    const persona = activePersona();
    if (!persona) return false;
    const target =
      persona.kind === "private" ? persona : state.personas.find((p) => p.kind === "private" && p.user_id === persona.user_id);
    if (!target) return false;
    const payload = url.searchParams.get("start");
    (async () => {
      if (target.key !== state.activeKey) await selectPersona(target.key);
      if (payload != null) sendText(`/start ${payload}`);
    })();
    return true;
  }

  // ---------------------------------------------------------------------------------------
  // The reply keyboard

  function currentReplyKeyboard(chat) {
    const msgs = sortedMessages(chat);
    const source = newestKeyboardMessage(msgs);
    const markup = source ? source.reply_markup : {};
    // The sandbox attaches the chat's keyboard to each message; the newest one that says wins.
    for (let i = msgs.length - 1; i >= 0; i -= 1) {
      if (msgs[i].reply_keyboard !== undefined) {
        const rows = msgs[i].reply_keyboard;
        return Array.isArray(rows) && rows.length ? { rows, markup, from: source && source.message_id } : null;
      }
    }
    // Otherwise work it out from the bot's reply markups, as Telegram does.
    for (let i = msgs.length - 1; i >= 0; i -= 1) {
      const m = msgs[i].outgoing && msgs[i].reply_markup;
      if (!m) continue;
      if (m.remove_keyboard) return null;
      if (Array.isArray(m.keyboard)) return { rows: m.keyboard, markup: m, from: msgs[i].message_id };
    }
    return null;
  }

  function newestKeyboardMessage(msgs) {
    for (let i = msgs.length - 1; i >= 0; i -= 1) {
      const markup = msgs[i].outgoing && msgs[i].reply_markup;
      if (markup && Array.isArray(markup.keyboard)) return msgs[i];
    }
    return null;
  }

  const buttonText = (button) => (typeof button === "string" ? button : button?.text || "");

  function renderReplyKeyboard(chat) {
    const keyboard = currentReplyKeyboard(chat);
    // A keyboard sent again (even the same one) shows itself again, as in Telegram.
    const sig = keyboard ? `${keyboard.from ?? ""}|${JSON.stringify(keyboard.rows)}` : null;
    if (sig !== state.keyboardSig) {
      state.keyboardSig = sig;
      state.keyboardOpen = true; // a new keyboard from the bot shows itself
      el.replyKeyboard.replaceChildren();
      if (keyboard) {
        for (const row of keyboard.rows) {
          const line = h("div", { class: "reply-row" });
          for (const button of row) {
            const text = buttonText(button);
            line.append(
              h("button", {
                type: "button",
                class: "reply-button",
                "data-testid": "reply-button",
                text,
                onclick: () => {
                  if (keyboard.markup && keyboard.markup.one_time_keyboard) setKeyboardOpen(false);
                  sendText(text);
                },
              }),
            );
          }
          el.replyKeyboard.append(line);
        }
      }
    }
    const placeholder = keyboard && keyboard.markup && keyboard.markup.input_field_placeholder;
    const wanted = state.attachments.length ? t("caption_placeholder") : placeholder || t("composer_placeholder");
    el.input.setAttribute("placeholder", wanted);
    el.keyboardToggle.hidden = !keyboard;
    setKeyboardOpen(Boolean(keyboard) && state.keyboardOpen);
  }

  function setKeyboardOpen(open) {
    if (el.replyKeyboard.childElementCount) state.keyboardOpen = open;
    const visible = open && el.replyKeyboard.childElementCount > 0;
    const stick = state.stickToBottom;
    el.replyKeyboard.hidden = !visible;
    el.keyboardToggle.setAttribute("aria-pressed", String(visible));
    const label = t(visible ? "hide_keyboard" : "show_keyboard");
    el.keyboardToggle.setAttribute("aria-label", label);
    el.keyboardToggle.setAttribute("title", label);
    if (stick) scrollToBottom();
  }

  // ---------------------------------------------------------------------------------------
  // Commands ("/" menu; optional, only when the sandbox lists them)

  function renderCommandsButton() {
    const has = state.commands.supported && state.commands.list.length > 0;
    el.commandsButton.hidden = !has;
    if (!has) closeCommandsMenu();
  }

  function openCommandsMenu() {
    el.commandsMenu.replaceChildren(
      ...state.commands.list.map((c) =>
        h(
          "button",
          {
            type: "button",
            role: "menuitem",
            class: "command-item",
            onclick: () => {
              closeCommandsMenu();
              sendText(`/${c.command}`);
            },
          },
          h("span", { class: "command-name", text: `/${c.command}` }),
          h("span", { class: "command-desc", text: c.description || "" }),
        ),
      ),
    );
    el.commandsMenu.hidden = false;
    el.commandsButton.setAttribute("aria-expanded", "true");
    el.commandsMenu.querySelector("button")?.focus();
  }

  function closeCommandsMenu() {
    el.commandsMenu.hidden = true;
    el.commandsButton.setAttribute("aria-expanded", "false");
  }

  // ---------------------------------------------------------------------------------------
  // Sending

  function sendText(raw) {
    const text = String(raw).trim();
    const persona = activePersona();
    if (!text || !persona) return Promise.resolve(false);
    // One at a time, so messages arrive in the order they were typed.
    const job = state.sendChain.then(async () => {
      try {
        const data = await api(`/chats/${encodeURIComponent(persona.chat_id)}/send`, {
          method: "POST",
          body: { user_id: persona.user_id, text },
        });
        if (data && data.message) {
          chatFor(persona.chat_id).messages.set(data.message.message_id, data.message);
          updatePersonaItems(persona.chat_id);
          if (state.activeKey === persona.key) renderChat({ toBottom: true });
        }
        return true;
      } catch {
        toast(t("send_failed"), "error");
        return false;
      }
    });
    state.sendChain = job;
    return job;
  }

  // Photos chosen with the attach button: shown above the composer until Send, which sends
  // them with the text as their caption (several photos are one album, as in Telegram).
  function addAttachments(files) {
    for (const file of files) {
      if (state.attachments.length >= MAX_PHOTOS) {
        toast(t("too_many_photos", { max: MAX_PHOTOS }), "error");
        break;
      }
      if (!PHOTO_TYPES.includes(file.type)) {
        toast(t("not_a_photo", { name: file.name }), "error");
        continue;
      }
      if (file.size > MAX_PHOTO_BYTES) {
        toast(t("photo_too_large", { name: file.name }), "error");
        continue;
      }
      state.attachments.push({ file, url: URL.createObjectURL(file) });
    }
    renderAttachments();
  }

  function removeAttachment(index) {
    const [gone] = state.attachments.splice(index, 1);
    if (gone) URL.revokeObjectURL(gone.url);
    renderAttachments();
  }

  function clearAttachments() {
    for (const item of state.attachments) URL.revokeObjectURL(item.url);
    state.attachments = [];
    renderAttachments();
  }

  function renderAttachments() {
    const stick = state.stickToBottom;
    const count = state.attachments.length;
    el.attachments.hidden = !count;
    el.attachments.replaceChildren(
      h("div", { class: "attachments-head" }, h("span", { text: t("photos_chosen", { count, max: MAX_PHOTOS }) }), h("button", { type: "button", class: "link-button", text: t("remove_all"), onclick: clearAttachments })),
      h(
        "ul",
        { class: "attachment-list" },
        state.attachments.map((item, index) =>
          h(
            "li",
            { class: "attachment", "data-testid": "attachment" },
            h("img", { src: item.url, alt: item.file.name }),
            h("button", { type: "button", class: "attachment-remove", "aria-label": t("remove_photo"), title: t("remove_photo"), onclick: () => removeAttachment(index) }, "×"),
          ),
        ),
      ),
    );
    el.input.setAttribute("placeholder", count ? t("caption_placeholder") : t("composer_placeholder"));
    el.send.classList.toggle("is-empty", !el.input.value.trim() && !count);
    if (stick) scrollToBottom();
  }

  function sendPhotos(files, caption) {
    const persona = activePersona();
    if (!files.length || !persona) return Promise.resolve(false);
    const job = state.sendChain.then(async () => {
      const form = new FormData();
      form.append("user_id", String(persona.user_id));
      form.append("caption", caption);
      for (const file of files) form.append("photo", file, file.name);
      try {
        const response = await fetch(`${API}/chats/${encodeURIComponent(persona.chat_id)}/photos`, { method: "POST", body: form, cache: "no-store" });
        if (!response.ok) throw new Error(`photos: HTTP ${response.status}`);
        const data = await response.json();
        const chat = chatFor(persona.chat_id);
        for (const message of data.messages || []) chat.messages.set(message.message_id, message);
        updatePersonaItems(persona.chat_id);
        if (state.activeKey === persona.key) renderChat({ toBottom: true });
        return true;
      } catch {
        toast(t("send_photos_failed"), "error");
        return false;
      }
    });
    state.sendChain = job;
    return job;
  }

  async function submitComposer() {
    const text = el.input.value;
    if (state.attachments.length) {
      const chosen = state.attachments;
      state.attachments = [];
      el.input.value = "";
      autosize();
      renderAttachments();
      const ok = await sendPhotos(chosen.map((item) => item.file), text.trim());
      if (ok) {
        for (const item of chosen) URL.revokeObjectURL(item.url);
      } else if (!state.attachments.length && !el.input.value) {
        state.attachments = chosen; // keep them for another try
        el.input.value = text;
        autosize();
        renderAttachments();
      }
      return;
    }
    if (!text.trim()) return;
    el.input.value = "";
    autosize();
    const ok = await sendText(text);
    if (!ok && !el.input.value) {
      el.input.value = text;
      autosize();
    }
  }

  function autosize() {
    const stick = state.stickToBottom;
    el.input.style.height = "";
    el.input.style.overflowY = "";
    // Measured only while visible: a hidden textarea has no height to measure.
    if (el.input.offsetParent && el.input.value) {
      el.input.style.height = "auto";
      const wanted = el.input.scrollHeight + 2; // + the borders
      el.input.style.height = `${Math.min(wanted, 160)}px`;
      if (wanted > 160) el.input.style.overflowY = "auto";
    }
    el.send.classList.toggle("is-empty", !el.input.value.trim() && !state.attachments.length);
    if (stick) scrollToBottom();
  }

  // ---------------------------------------------------------------------------------------
  // Toasts and dialogs

  function toast(text, kind = "info") {
    const node = h("div", { class: `toast ${kind}`, text });
    el.toasts.append(node);
    while (el.toasts.childElementCount > 3) el.toasts.firstElementChild.remove();
    setTimeout(() => {
      node.classList.add("leaving");
      setTimeout(() => node.remove(), 250);
    }, 3500);
  }

  function showAlert(text) {
    el.alertText.textContent = text;
    if (!el.alertDialog.open) el.alertDialog.showModal();
  }

  // `captioned`: the message whose caption goes with the photo (an album's shared caption).
  function openPhoto(msg, captioned = msg) {
    el.photoImg.src = msg.photo_url;
    el.photoImg.alt = captioned.caption || t("photo");
    el.photoLink.href = msg.photo_url;
    el.photoCaption.innerHTML = captioned.caption ? captioned.html || "" : "";
    if (captioned.caption && captioned.html == null) el.photoCaption.textContent = captioned.caption;
    el.photoCaption.hidden = !captioned.caption;
    el.photoDialog.showModal();
  }

  // ---------------------------------------------------------------------------------------
  // Wiring

  function bind() {
    el.langSwitch.addEventListener("click", (event) => {
      const button = event.target.closest("[data-lang]");
      if (button) setLanguage(button.dataset.lang);
    });
    el.back.addEventListener("click", showList);
    el.composer.addEventListener("submit", (event) => {
      event.preventDefault();
      submitComposer();
    });
    el.input.addEventListener("keydown", (event) => {
      // Enter sends; Shift+Enter is a new line; Enter that ends an IME composition does neither.
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
        event.preventDefault();
        submitComposer();
      }
    });
    el.input.addEventListener("input", autosize);
    el.attach.addEventListener("click", () => el.attachInput.click());
    el.attachInput.addEventListener("change", () => {
      addAttachments([...el.attachInput.files]);
      el.attachInput.value = ""; // the same file may be chosen again
      el.input.focus({ preventScroll: true });
    });
    el.emptyStart.addEventListener("click", () => sendText("/start"));
    el.keyboardToggle.addEventListener("click", () => setKeyboardOpen(el.replyKeyboard.hidden));
    el.commandsButton.addEventListener("click", () => {
      if (el.commandsMenu.hidden) openCommandsMenu();
      else closeCommandsMenu();
    });
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !el.commandsMenu.hidden) {
        closeCommandsMenu();
        el.commandsButton.focus();
      }
    });
    document.addEventListener("click", (event) => {
      if (!el.commandsMenu.hidden && !event.target.closest("#commands-menu, #commands-button")) closeCommandsMenu();
    });
    el.jump.addEventListener("click", () => {
      el.list.scrollTo({ top: el.list.scrollHeight, behavior: "smooth" });
    });
    el.list.addEventListener("scroll", () => {
      state.stickToBottom = isNearBottom();
      if (state.stickToBottom) {
        el.jump.hidden = true;
        const chat = activeChat();
        if (chat) chat.unread = 0;
      }
    });
    // Images loading, the keyboard appearing, the composer growing: stay at the bottom.
    const observer = new ResizeObserver(() => {
      if (state.stickToBottom) el.list.scrollTop = el.list.scrollHeight;
    });
    observer.observe(inner);
    observer.observe(el.list);
    // Links inside messages: spoilers reveal, t.me links to this bot stay in the sandbox.
    inner.addEventListener("click", (event) => {
      const spoiler = event.target.closest(".spoiler");
      if (spoiler && !spoiler.classList.contains("revealed")) {
        spoiler.classList.add("revealed");
        event.preventDefault();
        return;
      }
      const link = event.target.closest(".rich a[href]");
      if (link && openBotLink(link.getAttribute("href"))) event.preventDefault();
    });
    el.photoDialog.addEventListener("click", (event) => {
      if (event.target === el.photoDialog) el.photoDialog.close();
    });
    el.photoDialog.addEventListener("close", () => el.photoImg.removeAttribute("src"));
    window.addEventListener("hashchange", () => {
      const key = hashPersona();
      if (key && state.byKey.has(key) && key !== state.activeKey) selectPersona(key);
    });
    document.addEventListener("visibilitychange", () => {
      const chat = activeChat();
      if (!document.hidden && chat && state.stickToBottom) {
        chat.unread = 0;
        updatePersonaItems(chat.id);
      }
    });
  }

  async function boot() {
    await loadStrings();
    applyStaticStrings();
    autosize();
    const [ok] = await Promise.all([loadPersonas(), loadInfo()]);
    if (!ok) return;
    const wanted = [hashPersona(), store.get(STORE_PERSONA)].find((key) => key && state.byKey.has(key));
    const first = wanted || (!NARROW.matches && state.personas[0] ? state.personas[0].key : null);
    if (first) {
      await selectPersona(first);
    } else {
      showPlaceholder();
      el.app.dataset.view = "list";
    }
    await prefetchHistories();
    if (state.cursor == null) {
      // No chat at all yet: the first history will set the cursor; nothing to watch until then.
      return;
    }
    if (!state.pollAbort) restartPoll();
  }

  bind();
  boot();
})();
