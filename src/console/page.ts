/**
 * The console page's script (bundled with the SDK as `/page.js`, see
 * `_bundle.ts`): a {@linkcode SkytaleChannelManager} in the tab joins the
 * channel an invite names, then the page shows its members, its messages
 * live, and its shared context, and sends what the person types.
 *
 * Every text that comes from the channel (names, messages, context values) is
 * put into the page with `textContent`, never as markup: an agent that sends
 * `<script>` is shown `<script>`. State lives in a {@linkcode MemoryStore}:
 * the tab's identity ends with the tab.
 *
 * @module
 */
import {
  type ContextEntry,
  type Member,
  MemoryStore,
  type Message,
  SkytaleChannelManager,
} from "../../mod.ts";
import { decodeInviteToken } from "../channel/invite.ts";

/** How often the member list is read again (a local read; joins of others have no event). */
const MEMBERS_REFRESH_MS = 2000;
/** How long a join waits for the inviter to admit this tab. */
const JOIN_TIMEOUT_SECONDS = 60;

function _el<T extends HTMLElement = HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (!e) throw new Error(`The page has no element "#${id}"`);
  return e as T;
}

/** A new element with text (never markup) and optional class. */
function _text<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  text: string,
  cls?: string,
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

/** `did:key:z6MkhaXg…Q2doKd`: enough to tell members apart at a glance. */
export function shortDid(did: string): string {
  return did.length <= 28 ? did : `${did.slice(0, 16)}…${did.slice(-6)}`;
}

function _status(text: string, error = false): void {
  const s = _el("status");
  s.textContent = text;
  s.classList.toggle("error", error);
}

function _message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function _time(iso: string): HTMLTimeElement {
  const t = _text("time", Number.isNaN(Date.parse(iso)) ? iso : new Date(iso).toLocaleString());
  t.dateTime = iso;
  return t;
}

/** Whether the relay an invite names is the one this console was started for. */
function _sameRelay(a: string, b: string): boolean {
  try {
    const x = new URL(a), y = new URL(b);
    return x.protocol === y.protocol && x.host === y.host;
  } catch {
    return false;
  }
}

function _renderMembers(roster: Member[], me: Member): void {
  const rows = roster.map((m) => {
    const tr = document.createElement("tr");
    tr.dataset.did = m.did;
    const name = _text("td", m.did === me.did ? `${m.name} (you)` : m.name, "name");
    const did = _text("td", m.did, "did");
    tr.append(name, did, _text("td", m.fingerprint, "fingerprint"));
    return tr;
  });
  _el("members").querySelector("tbody")!.replaceChildren(...rows);
}

/** Adds a message to the log, in sequence order. */
function _appendMessage(m: Message, mine: boolean): void {
  const log = _el("messages");
  const li = document.createElement("li");
  li.dataset.seq = String(m.seq);
  li.dataset.senderDid = m.senderId;
  if (mine) li.className = "mine";
  const did = _text("code", shortDid(m.senderId), "did");
  did.title = m.senderId;
  li.append(_text("span", m.sender, "sender"), did, _time(m.time), _text("div", m.text, "text"));
  const later = [...log.children].find((c) => Number((c as HTMLElement).dataset.seq) > m.seq);
  log.insertBefore(li, later ?? null);
  log.scrollTop = log.scrollHeight;
}

function _valueText(e: ContextEntry): string {
  if (e.value === undefined) return "(sealed to other members)";
  return typeof e.value === "string" ? e.value : JSON.stringify(e.value, null, 1);
}

function _renderContext(entries: ContextEntry[]): void {
  const rows = entries.map((e) => {
    const tr = document.createElement("tr");
    tr.dataset.key = e.key;
    const author = _text("td", e.author.name, "author");
    author.title = e.author.did;
    const updated = document.createElement("td");
    updated.append(_time(e.updated));
    tr.append(
      _text("td", e.key, "key"),
      _text("td", e.type, "type"),
      _text("td", _valueText(e), "value"),
      author,
      updated,
    );
    return tr;
  });
  _el("context").querySelector("tbody")!.replaceChildren(...rows);
}

/** Shows the channel once joined and keeps it up to date. */
async function _show(agent: SkytaleChannelManager, channel: string): Promise<void> {
  const me = await agent.whoami();
  _el("join").hidden = true;
  _el("channel").hidden = false;
  _el("channel-name").textContent = channel;
  const meLine = _el("me");
  meLine.replaceChildren(
    `You are ${me.name}, `,
    _text("code", me.did, "did"),
    ", fingerprint ",
    _text("code", me.fingerprint, "fingerprint"),
  );
  meLine.dataset.did = me.did;
  const members = async () => _renderMembers(await agent.roster(channel), me);
  await members();
  setInterval(() => void members().catch(() => {}), MEMBERS_REFRESH_MS);

  agent.on("message", (m) => {
    _appendMessage(m, false);
    void members().catch(() => {});
  }, { channel });

  const ctx = agent.context(channel);
  const refresh = async () => _renderContext(await ctx.list());
  ctx.subscribe(() => void refresh().catch((e) => _status(_message(e), true)));
  await refresh();
  void ctx.synced(10_000).then(refresh, () => {});

  _el("send-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = _el<HTMLInputElement>("message");
    const text = input.value;
    if (!text) return;
    input.value = "";
    agent.send(channel, text).then(({ seq }) => {
      const time = new Date().toISOString();
      _appendMessage({ sender: me.name, senderId: me.did, seq, time, text }, true);
    }, (e) => {
      input.value = text;
      _status(`Not sent: ${_message(e)}`, true);
    });
  });
  _el("context-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const key = _el<HTMLInputElement>("context-key");
    const value = _el<HTMLInputElement>("context-value");
    ctx.set(key.value, value.value).then(() => {
      key.value = value.value = "";
      return refresh();
    }).catch((e) => _status(`Not set: ${_message(e)}`, true));
  });
  _status(`Joined ${channel}.`);
}

/** Joins the channel the pasted invite names, as a new identity of this tab. */
async function _join(): Promise<void> {
  const identity = _el<HTMLInputElement>("identity").value.trim();
  const token = _el<HTMLTextAreaElement>("invite").value.trim();
  const invite = decodeInviteToken(token);
  const relay = document.querySelector<HTMLMetaElement>('meta[name="skytale-relay"]')?.content;
  if (relay && !_sameRelay(relay, invite.relay)) {
    throw new Error(
      `The invite is for the relay "${invite.relay}"; this console is set up for "${relay}"`,
    );
  }
  const agent = new SkytaleChannelManager({
    identity,
    endpoint: invite.relay,
    store: new MemoryStore(),
  });
  _status(`Asking to join ${invite.channel} on ${invite.relay}; the inviter must be running…`);
  try {
    await agent.joinWithToken(invite.channel, token, { timeout: JOIN_TIMEOUT_SECONDS });
  } catch (e) {
    await agent.close().catch(() => {});
    throw e;
  }
  addEventListener("pagehide", () => void agent.close());
  await _show(agent, invite.channel);
}

function _start(): void {
  const name = _el<HTMLInputElement>("identity");
  name.value = `console-${crypto.getRandomValues(new Uint8Array(3)).toHex()}`;
  const form = _el<HTMLFormElement>("join-form");
  const button = _el<HTMLButtonElement>("join-button");
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    button.disabled = true;
    _join().catch((e) => {
      button.disabled = false;
      _status(`Could not join: ${_message(e)}`, true);
    });
  });
  document.body.dataset.ready = "true";
}

if (typeof document !== "undefined") _start();
