// The page's agent. Everything it needs comes from the URL:
//   ?name=bob                   its identity (made up, and put in the URL, when missing)
//   #invite=skt_inv_…           an invite token from `invite()` of a member of the channel
//   &channel=acme/demo/chat     the channel the token is for
//   &relay=ws://127.0.0.1:5000  the relay that member uses
// The fragment (#…) never leaves the browser: the token is not sent to the page's server.
import { IndexedDbStore, SkytaleChannelManager } from "./skytale.js";

const status = document.getElementById("status");
const list = document.getElementById("messages");
const form = document.getElementById("send");
const input = document.getElementById("text");

const query = new URLSearchParams(location.search);
const fragment = new URLSearchParams(location.hash.slice(1));
const channel = fragment.get("channel");
const relay = fragment.get("relay");
let name = query.get("name");
if (!name) {
  // A made-up identity, written into the URL so that a reload is the same agent.
  name = `guest-${crypto.randomUUID().slice(0, 8)}`;
  query.set("name", name);
  history.replaceState(null, "", `?${query}${location.hash}`);
}

/** Adds a line to the list, as text: a message is never read as HTML. */
function show(line) {
  const item = document.createElement("li");
  item.textContent = line;
  list.append(item);
}

// IndexedDbStore keeps the identity key and the channel's MLS state in this origin's
// IndexedDB (database "skytale/<name>"), so after a reload the agent is the same member.
const agent = new SkytaleChannelManager({
  identity: name,
  endpoint: relay ?? undefined,
  store: new IndexedDbStore(name),
});

try {
  if (!channel || !relay) throw new Error("The URL needs #invite=…&channel=…&relay=…");
  // A reload finds the channel among the agent's own: the invite, used once, is not needed again.
  const joined = (await agent.channels()).some((c) => c.channel === channel);
  if (!joined) {
    status.textContent = `Joining ${channel} as ${name}…`;
    await agent.joinWithToken(channel, fragment.get("invite"));
  }
  const { did } = await agent.whoami();
  status.textContent = `Member of ${channel} as ${name} (${did})`;
  // Each message is handed out once: one shown before a reload is not shown again.
  agent.on("message", (m) => show(`${m.sender}: ${m.text}`), { channel });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value;
    input.value = "";
    try {
      await agent.send(channel, text);
      show(`${name} (me): ${text}`);
    } catch (e) {
      status.textContent = `Not sent: ${e.message}`;
    }
  });
} catch (e) {
  status.textContent = `Failed: ${e.message}`;
}
