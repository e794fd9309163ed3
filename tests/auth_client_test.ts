// The client half of relay auth (src/relay/auth_client.ts) against token API answers of every
// shape: a relay's answer is untrusted JSON, and a bad one must become a clear error.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ApiKeyTokens } from "../src/relay/auth_client.ts";
import { AuthError, RelayError } from "../src/errors.ts";

const KEY = "sk_live_" + "a".repeat(43);

/** A fetch that answers every request with `body` (a string is sent as is) and counts calls. */
function answering(status: number, body: unknown): { fetch: typeof fetch; calls: () => number } {
  let n = 0;
  const f = (() => {
    n++;
    const text = typeof body === "string" ? body : JSON.stringify(body);
    return Promise.resolve(new Response(text, { status }));
  }) as typeof fetch;
  return { fetch: f, calls: () => n };
}

function jwt(claims: Record<string, unknown>): string {
  const part = (o: unknown) => btoa(JSON.stringify(o)).replaceAll("=", "");
  return `${part({ alg: "EdDSA" })}.${part(claims)}.sig`;
}

test("ApiKeyTokens.token() caches a token for half the lifetime the token API gives", async () => {
  const api = answering(200, { token: "t1", expires_in: 3600 });
  const tokens = new ApiKeyTokens({ apiKey: KEY, apiUrls: ["http://x"], fetch: api.fetch });
  assert.equal(await tokens.token(), "t1");
  assert.equal(await tokens.token(), "t1");
  assert.equal(api.calls(), 1);
});

test("ApiKeyTokens.token() falls back to the JWT's own times when expires_in is missing or bad", async () => {
  const now = Math.floor(Date.now() / 1000);
  const token = jwt({ iat: now, exp: now + 600 });
  for (const body of [{ token }, { token, expires_in: "soon" }]) {
    const api = answering(200, body);
    const tokens = new ApiKeyTokens({ apiKey: KEY, apiUrls: ["http://x"], fetch: api.fetch });
    assert.equal(await tokens.token(), token);
    assert.equal(await tokens.token(), token);
    assert.equal(api.calls(), 1);
  }
});

test("ApiKeyTokens.token() refuses answers without a usable token with relay_unavailable", async () => {
  for (
    const body of ["not json", { token: 42 }, { nothing: true }, { token: "opaque-no-expiry" }]
  ) {
    const api = answering(200, body);
    const tokens = new ApiKeyTokens({ apiKey: KEY, apiUrls: ["http://x"], fetch: api.fetch });
    await assert.rejects(
      tokens.token(),
      (e) =>
        e instanceof RelayError && e.code === "relay_unavailable" && /http:\/\/x/.test(e.message),
      JSON.stringify(body),
    );
  }
});

test("ApiKeyTokens.token() turns a refusal into AuthError, with the relay's message when it has one", async () => {
  const withMessage = answering(401, { error: { code: "auth", message: "API key was revoked" } });
  await assert.rejects(
    new ApiKeyTokens({ apiKey: KEY, apiUrls: ["http://x"], fetch: withMessage.fetch }).token(),
    (e) => e instanceof AuthError && /API key was revoked/.test(e.message),
  );
  const garbled = answering(403, { error: "nope" });
  await assert.rejects(
    new ApiKeyTokens({ apiKey: KEY, apiUrls: ["http://x"], fetch: garbled.fetch }).token(),
    (e) => e instanceof AuthError && /HTTP 403/.test(e.message),
  );
});
