/**
 * The console's page and style sheet, as strings: a TypeScript module, so that
 * they travel in the published package with the code that serves them.
 *
 * The page is static HTML; `page.ts` (bundled as `/page.js`) fills it in with
 * DOM calls that set `textContent` only, never markup, so whatever an agent
 * sends is shown as text.
 *
 * @module
 */

/** Escapes text for an HTML attribute value in double quotes. */
function _attr(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;").replace(
    />/g,
    "&gt;",
  );
}

/**
 * The console's HTML.
 *
 * @param relay The relay the page may use (`""`: the one each invite names).
 * @returns The document.
 */
export function pageHtml(relay: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="skytale-relay" content="${_attr(relay)}">
<title>Skytale console</title>
<link rel="stylesheet" href="/page.css">
<script type="module" src="/page.js"></script>
</head>
<body>
<header>
<h1>Skytale console</h1>
<p id="about">End-to-end encrypted: this tab holds the keys and does all encryption and
decryption. The server that sent this page serves static files only, and the relay sees only
ciphertext. Nothing is kept: closing the tab forgets this identity.</p>
</header>
<main>
<section id="join" aria-labelledby="join-heading">
<h2 id="join-heading">Join a channel</h2>
<form id="join-form">
<p><label for="identity">Your name in the channel</label><br>
<input id="identity" name="identity" required maxlength="128" autocomplete="off"
 spellcheck="false"></p>
<p><label for="invite">Invite token</label><br>
<textarea id="invite" name="invite" rows="4" cols="70" required spellcheck="false"
 placeholder="skt_inv_…"></textarea></p>
<p><button id="join-button" type="submit">Join</button></p>
</form>
</section>
<p id="status" role="status" aria-live="polite"></p>
<div id="channel" hidden>
<h2 id="channel-name"></h2>
<p id="me"></p>
<section aria-labelledby="members-heading">
<h3 id="members-heading">Members</h3>
<table id="members">
<thead><tr><th scope="col">Name</th><th scope="col">did</th><th scope="col">Fingerprint</th></tr></thead>
<tbody></tbody>
</table>
</section>
<section aria-labelledby="messages-heading">
<h3 id="messages-heading">Messages</h3>
<ol id="messages" role="log" aria-live="polite" aria-labelledby="messages-heading"></ol>
<form id="send-form">
<label for="message">Message</label>
<input id="message" name="message" required autocomplete="off" size="60">
<button id="send-button" type="submit">Send</button>
</form>
</section>
<section aria-labelledby="context-heading">
<h3 id="context-heading">Shared context</h3>
<table id="context">
<thead><tr><th scope="col">Key</th><th scope="col">Type</th><th scope="col">Value</th>
<th scope="col">Author</th><th scope="col">Updated</th></tr></thead>
<tbody></tbody>
</table>
<form id="context-form">
<label for="context-key">Key</label>
<input id="context-key" name="key" required autocomplete="off" maxlength="256">
<label for="context-value">Value</label>
<input id="context-value" name="value" required autocomplete="off" size="40">
<button id="context-button" type="submit">Set</button>
</form>
</section>
</div>
</main>
</body>
</html>
`;
}

/** The console's style sheet. */
export const PAGE_CSS =
  `body { font: 15px/1.45 system-ui, sans-serif; margin: 1.5rem auto; max-width: 60rem;
  padding: 0 1rem; color: #1b1b1b; background: #fdfdfd; }
h1 { font-size: 1.4rem; margin-bottom: 0.2rem; }
#about { color: #444; max-width: 46rem; }
textarea, input { font: 14px ui-monospace, monospace; max-width: 100%; }
table { border-collapse: collapse; width: 100%; margin-bottom: 0.5rem; }
th, td { text-align: left; padding: 0.2rem 0.5rem; border-bottom: 1px solid #ddd;
  vertical-align: top; }
td.did, td.fingerprint, code { font-family: ui-monospace, monospace; font-size: 13px;
  word-break: break-all; }
#messages { list-style: none; padding: 0; max-height: 24rem; overflow-y: auto;
  border: 1px solid #ddd; }
#messages li { padding: 0.25rem 0.5rem; border-bottom: 1px solid #eee; }
#messages .sender { font-weight: 600; }
#messages .did, #messages time { color: #666; font-size: 12px; margin-left: 0.4rem; }
#messages .text, td.value { white-space: pre-wrap; overflow-wrap: anywhere; }
#messages li.mine { background: #f3f7ff; }
#status:empty { display: none; }
#status { padding: 0.4rem 0.6rem; background: #fff7d6; border: 1px solid #e8d48a; }
#status.error { background: #ffe6e6; border-color: #e39b9b; }
form label { margin-right: 0.3rem; }
`;
