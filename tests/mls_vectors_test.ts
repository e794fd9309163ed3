/**
 * The official MLS interop test vectors (mlswg/mls-implementations), run
 * through ts-mls with our fast crypto provider. Vectors of ciphersuites the
 * installation cannot build (missing optional ts-mls peers) are skipped and
 * counted in the test names.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  type CiphersuiteId,
  type CiphersuiteImpl,
  getCiphersuiteFromId,
  getCiphersuiteNameFromId,
} from "ts-mls/crypto/ciphersuite.js";
import { type CryptoProvider, getCiphersuiteImpl } from "ts-mls";
import { refhash } from "ts-mls/crypto/hash.js";
import { deriveSecret, deriveTreeSecret, expandWithLabel } from "ts-mls/crypto/kdf.js";
import { signWithLabel, verifyWithLabel } from "ts-mls/crypto/signature.js";
import { decryptWithLabel, encryptWithLabel } from "ts-mls/crypto/hpke.js";
import { createSecretTree, deriveKey, deriveNonce, ratchetUntil } from "ts-mls/secretTree.js";
import { expandSenderDataKey, expandSenderDataNonce } from "ts-mls/sender.js";
import { initializeEpoch, mlsExporter } from "ts-mls/keySchedule.js";
import { decodeGroupContext, type GroupContext } from "ts-mls/groupContext.js";
import { decodeMlsMessage } from "ts-mls/message.js";
import { protect, unprotectPrivateMessage } from "ts-mls/messageProtection.js";
import { protectPublicMessage, unprotectPublicMessage } from "ts-mls/messageProtectionPublic.js";
import { createContentCommitSignature } from "ts-mls/framedContent.js";
import { decodeProposal, encodeProposal } from "ts-mls/proposal.js";
import { decodeCommit, encodeCommit } from "ts-mls/commit.js";
import { makeKeyPackageRef } from "ts-mls/keyPackage.js";
import { decryptGroupInfo, decryptGroupSecrets } from "ts-mls/welcome.js";
import { verifyGroupInfoSignature } from "ts-mls/groupInfo.js";
import { decodeAuthenticatedContent } from "ts-mls/authenticatedContent.js";
import { createConfirmedHash, createInterimHash } from "ts-mls/transcriptHash.js";
import { computePskSecret, type PreSharedKeyID } from "ts-mls/presharedkey.js";
import { defaultKeyRetentionConfig } from "ts-mls/keyRetentionConfig.js";
import { defaultPaddingConfig } from "ts-mls/paddingConfig.js";
import { fastCryptoProvider } from "../src/mls/provider.ts";
import { readFileIfExists } from "../src/runtime/fs.ts";

/** The vectors, as a sibling checkout of the repo sees them (CI clones it beside shared/). */
const VECTORS = new URL("../../shared/mls-test-vectors/", import.meta.url);

type Json = Record<string, unknown>;

async function load(name: string): Promise<Json[] | undefined> {
  const bytes = await readFileIfExists(decodeURIComponent(new URL(name, VECTORS).pathname));
  return bytes === undefined ? undefined : JSON.parse(new TextDecoder().decode(bytes));
}

function hex(s: unknown): Uint8Array {
  assert.equal(typeof s, "string");
  const str = s as string;
  const out = new Uint8Array(str.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(str.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function eqHex(actual: Uint8Array, expected: unknown, what: string): void {
  assert.equal(toHex(actual), expected, what);
}

// Build the implementation of every suite in the vectors once, up front, so
// that test names can say how many are skipped.
const impls = new Map<number, CiphersuiteImpl>();
for (let id = 1; id <= 7; id++) {
  try {
    impls.set(
      id,
      await getCiphersuiteImpl(
        getCiphersuiteFromId(id as CiphersuiteId),
        fastCryptoProvider as unknown as CryptoProvider,
      ),
    );
  } catch {
    // Not available in this installation (optional ts-mls peer missing).
  }
}
const unavailable = [1, 2, 3, 4, 5, 6, 7].filter((id) => !impls.has(id));

/**
 * Defines one test per vector file: runs `check` on each vector whose suite
 * is available, counts the skipped ones, and fails if none ran.
 */
async function vectorTest(
  file: string,
  what: string,
  check: (v: Json, cs: CiphersuiteImpl) => Promise<void>,
  pick: (all: Json[]) => Json[] = (all) => all,
): Promise<void> {
  const all = await load(file);
  if (all === undefined) {
    test(`${file}: ${what} (vectors not found, skipped)`, { skip: true }, () => {});
    return;
  }
  const chosen = pick(all);
  const runnable = chosen.filter((v) => impls.has(v.cipher_suite as number));
  const skipped = chosen.length - runnable.length;
  const sub = chosen.length === all.length ? "" : `, a subsample of ${chosen.length}/${all.length}`;
  test(
    `${file}: ${what} with our provider (${runnable.length} vectors pass${sub}; ${skipped} skipped for unavailable suites ${
      unavailable.join(",") || "none"
    })`,
    async () => {
      assert.ok(runnable.length > 0, "no vector ran");
      for (const v of runnable) {
        try {
          await check(v, impls.get(v.cipher_suite as number)!);
        } catch (e) {
          throw new Error(`suite ${v.cipher_suite}: ${e instanceof Error ? e.message : e}`, {
            cause: e,
          });
        }
      }
    },
  );
}

await vectorTest(
  "crypto-basics.json",
  "RefHash, ExpandWithLabel, DeriveSecret, DeriveTreeSecret, SignWithLabel, EncryptWithLabel",
  async (v, cs) => {
    const r = v.ref_hash as Json;
    eqHex(await refhash(r.label as string, hex(r.value), cs.hash), r.out, "ref_hash");
    const e = v.expand_with_label as Json;
    eqHex(
      await expandWithLabel(
        hex(e.secret),
        e.label as string,
        hex(e.context),
        e.length as number,
        cs.kdf,
      ),
      e.out,
      "expand_with_label",
    );
    const d = v.derive_secret as Json;
    eqHex(await deriveSecret(hex(d.secret), d.label as string, cs.kdf), d.out, "derive_secret");
    const t = v.derive_tree_secret as Json;
    eqHex(
      await deriveTreeSecret(
        hex(t.secret),
        t.label as string,
        t.generation as number,
        t.length as number,
        cs.kdf,
      ),
      t.out,
      "derive_tree_secret",
    );
    const s = v.sign_with_label as Json;
    assert.ok(
      await verifyWithLabel(
        hex(s.pub),
        s.label as string,
        hex(s.content),
        hex(s.signature),
        cs.signature,
      ),
      "given signature verifies",
    );
    const sig = await signWithLabel(hex(s.priv), s.label as string, hex(s.content), cs.signature);
    assert.ok(
      await verifyWithLabel(hex(s.pub), s.label as string, hex(s.content), sig, cs.signature),
      "own signature verifies",
    );
    const bad = hex(s.content);
    bad[0]! ^= 1;
    assert.equal(
      await verifyWithLabel(hex(s.pub), s.label as string, bad, hex(s.signature), cs.signature),
      false,
      "signature over other content is refused",
    );
    const h = v.encrypt_with_label as Json;
    const priv = await cs.hpke.importPrivateKey(hex(h.priv));
    eqHex(
      await decryptWithLabel(
        priv,
        h.label as string,
        hex(h.context),
        hex(h.kem_output),
        hex(h.ciphertext),
        cs.hpke,
      ),
      h.plaintext,
      "decrypt_with_label",
    );
    const pub = await cs.hpke.importPublicKey(hex(h.pub));
    const sealed = await encryptWithLabel(
      pub,
      h.label as string,
      hex(h.context),
      hex(h.plaintext),
      cs.hpke,
    );
    eqHex(
      await decryptWithLabel(
        priv,
        h.label as string,
        hex(h.context),
        sealed.enc,
        sealed.ct,
        cs.hpke,
      ),
      h.plaintext,
      "encrypt_with_label round trip",
    );
  },
);

await vectorTest(
  "secret-tree.json",
  "sender data keys and application/handshake ratchets",
  async (v, cs) => {
    const sd = v.sender_data as Json;
    eqHex(
      await expandSenderDataKey(cs, hex(sd.sender_data_secret), hex(sd.ciphertext)),
      sd.key,
      "sender data key",
    );
    eqHex(
      await expandSenderDataNonce(cs, hex(sd.sender_data_secret), hex(sd.ciphertext)),
      sd.nonce,
      "sender data nonce",
    );
    const leaves = v.leaves as Json[][];
    const tree = await createSecretTree(leaves.length, hex(v.encryption_secret), cs.kdf);
    const config = { ...defaultKeyRetentionConfig, maximumForwardRatchetSteps: 1 << 20 };
    for (let leaf = 0; leaf < leaves.length; leaf++) {
      for (const g of leaves[leaf]!) {
        const gen = g.generation as number;
        for (const kind of ["application", "handshake"] as const) {
          const [at] = await ratchetUntil(tree[leaf * 2]![kind], gen, config, cs.kdf);
          eqHex(await deriveKey(at.secret, gen, cs), g[`${kind}_key`], `${kind} key`);
          eqHex(await deriveNonce(at.secret, gen, cs), g[`${kind}_nonce`], `${kind} nonce`);
        }
      }
    }
  },
);

await vectorTest("key-schedule.json", "epoch secrets, exporter", async (v, cs) => {
  let initSecret = hex(v.initial_init_secret);
  for (const e of v.epochs as Json[]) {
    const decoded = decodeGroupContext(hex(e.group_context), 0);
    assert.ok(decoded !== undefined, "group context decodes");
    const gc: GroupContext = decoded[0];
    eqHex(gc.treeHash, e.tree_hash, "tree hash in context");
    const s = await initializeEpoch(
      initSecret,
      hex(e.commit_secret),
      gc,
      hex(e.psk_secret),
      cs.kdf,
    );
    eqHex(s.joinerSecret, e.joiner_secret, "joiner_secret");
    eqHex(s.welcomeSecret, e.welcome_secret, "welcome_secret");
    eqHex(s.encryptionSecret, e.encryption_secret, "encryption_secret");
    const k = s.keySchedule;
    eqHex(k.senderDataSecret, e.sender_data_secret, "sender_data_secret");
    eqHex(k.exporterSecret, e.exporter_secret, "exporter_secret");
    eqHex(k.externalSecret, e.external_secret, "external_secret");
    eqHex(k.confirmationKey, e.confirmation_key, "confirmation_key");
    eqHex(k.membershipKey, e.membership_key, "membership_key");
    eqHex(k.resumptionPsk, e.resumption_psk, "resumption_psk");
    eqHex(k.epochAuthenticator, e.epoch_authenticator, "epoch_authenticator");
    eqHex(k.initSecret, e.init_secret, "init_secret");
    const kp = await cs.hpke.deriveKeyPair(k.externalSecret);
    eqHex(await cs.hpke.exportPublicKey(kp.publicKey), e.external_pub, "external_pub");
    const x = e.exporter as Json;
    // The exporter label is used as given: its hex text is the label string.
    eqHex(
      await mlsExporter(
        k.exporterSecret,
        x.label as string,
        hex(x.context),
        x.length as number,
        cs,
      ),
      x.secret,
      "exporter",
    );
    initSecret = k.initSecret;
  }
});

await vectorTest(
  "message-protection.json",
  "unprotect the given public/private messages, protect and unprotect again",
  async (v, cs) => {
    const gc: GroupContext = {
      version: "mls10",
      cipherSuite: getCiphersuiteNameFromId(v.cipher_suite as CiphersuiteId),
      groupId: hex(v.group_id),
      epoch: BigInt(v.epoch as number),
      treeHash: hex(v.tree_hash),
      confirmedTranscriptHash: hex(v.confirmed_transcript_hash),
      extensions: [],
    };
    const pub = hex(v.signature_pub);
    const membershipKey = hex(v.membership_key);
    const retention = defaultKeyRetentionConfig;
    const tree = () => createSecretTree(2, hex(v.encryption_secret), cs.kdf);
    const sds = hex(v.sender_data_secret);

    for (
      const [field, plain, kind] of [
        ["proposal_pub", "proposal", "proposal"],
        ["commit_pub", "commit", "commit"],
      ] as const
    ) {
      const m = decodeMlsMessage(hex(v[field]), 0)?.[0];
      assert.ok(m?.wireformat === "mls_public_message", `${field} decodes`);
      const c = (await unprotectPublicMessage(membershipKey, gc, [], m.publicMessage, cs, pub))
        .content;
      assert.equal(c.contentType, kind);
      const bytes = c.contentType === "proposal"
        ? encodeProposal(c.proposal)
        : c.contentType === "commit"
        ? encodeCommit(c.commit)
        : new Uint8Array();
      eqHex(bytes, v[plain], field);
    }

    for (
      const [field, plain] of [
        ["proposal_priv", "proposal"],
        ["commit_priv", "commit"],
        ["application_priv", "application"],
      ] as const
    ) {
      const m = decodeMlsMessage(hex(v[field]), 0)?.[0];
      assert.ok(m?.wireformat === "mls_private_message", `${field} decodes`);
      const r = await unprotectPrivateMessage(
        sds,
        m.privateMessage,
        await tree(),
        [],
        gc,
        retention,
        cs,
        pub,
      );
      const c = r.content.content;
      const bytes = c.contentType === "proposal"
        ? encodeProposal(c.proposal)
        : c.contentType === "commit"
        ? encodeCommit(c.commit)
        : c.applicationData;
      eqHex(bytes, v[plain], field);
    }

    // Protect a commit privately and publicly with our provider, then unprotect.
    const commit = decodeCommit(hex(v.commit), 0)?.[0];
    assert.ok(commit !== undefined);
    for (const wireformat of ["mls_private_message", "mls_public_message"] as const) {
      const { framedContent, signature } = await createContentCommitSignature(
        gc,
        wireformat,
        commit,
        { leafIndex: 1, senderType: "member" },
        new Uint8Array(),
        hex(v.signature_priv),
        cs.signature,
      );
      const confirmationTag = await cs.hash.mac(membershipKey, hex(v.commit));
      if (wireformat === "mls_private_message") {
        const t = await tree();
        const p = await protect(
          sds,
          new Uint8Array(),
          gc,
          t,
          { ...framedContent, auth: { contentType: "commit", signature, confirmationTag } },
          1,
          defaultPaddingConfig,
          cs,
        );
        const r = await unprotectPrivateMessage(
          sds,
          p.privateMessage,
          await tree(),
          [],
          gc,
          retention,
          cs,
          pub,
        );
        assert.equal(r.content.content.contentType, "commit");
        if (r.content.content.contentType === "commit") {
          eqHex(encodeCommit(r.content.content.commit), v.commit, "private commit round trip");
        }
      } else {
        const p = await protectPublicMessage(membershipKey, gc, {
          wireformat,
          content: framedContent,
          auth: { contentType: "commit", signature, confirmationTag },
        }, cs);
        const c = (await unprotectPublicMessage(membershipKey, gc, [], p, cs, pub)).content;
        assert.equal(c.contentType, "commit");
        if (c.contentType === "commit") {
          eqHex(encodeCommit(c.commit), v.commit, "public commit round trip");
        }
      }
    }
    assert.ok(decodeProposal(hex(v.proposal), 0) !== undefined);
  },
);

await vectorTest(
  "welcome.json",
  "decrypt group secrets and group info, verify the signer",
  async (v, cs) => {
    const kpMsg = decodeMlsMessage(hex(v.key_package), 0)?.[0];
    const wMsg = decodeMlsMessage(hex(v.welcome), 0)?.[0];
    assert.ok(kpMsg?.wireformat === "mls_key_package" && wMsg?.wireformat === "mls_welcome");
    const ref = await makeKeyPackageRef(kpMsg.keyPackage, cs.hash);
    const initKey = await cs.hpke.importPrivateKey(hex(v.init_priv));
    const secrets = await decryptGroupSecrets(initKey, ref, wMsg.welcome, cs.hpke);
    assert.ok(secrets !== undefined, "group secrets decrypt");
    const gi = await decryptGroupInfo(
      wMsg.welcome,
      secrets.joinerSecret,
      new Uint8Array(cs.kdf.size),
      cs,
    );
    assert.ok(gi !== undefined, "group info decrypts");
    assert.ok(await verifyGroupInfoSignature(gi, hex(v.signer_pub), cs.signature), "signed");
  },
);

await vectorTest(
  "transcript-hashes.json",
  "confirmed and interim transcript hashes, confirmation tag",
  async (v, cs) => {
    const ac = decodeAuthenticatedContent(hex(v.authenticated_content), 0)?.[0];
    assert.ok(ac !== undefined && ac.content.contentType === "commit", "commit content decodes");
    const confirmed = await createConfirmedHash(
      hex(v.interim_transcript_hash_before),
      { wireformat: ac.wireformat, content: ac.content, signature: ac.auth.signature },
      cs.hash,
    );
    eqHex(confirmed, v.confirmed_transcript_hash_after, "confirmed transcript hash");
    assert.ok(ac.auth.contentType === "commit");
    const tag = ac.auth.confirmationTag;
    assert.ok(await cs.hash.verifyMac(hex(v.confirmation_key), tag, confirmed), "tag verifies");
    eqHex(
      await createInterimHash(confirmed, tag, cs.hash),
      v.interim_transcript_hash_after,
      "interim transcript hash",
    );
  },
);

await vectorTest("psk_secret.json", "PSK secret from external PSKs", async (v, cs) => {
  const psks = (v.psks as Json[]).map((p): [PreSharedKeyID, Uint8Array] => [
    { psktype: "external", pskId: hex(p.psk_id), pskNonce: hex(p.psk_nonce) },
    hex(p.psk),
  ]);
  eqHex(await computePskSecret(psks, cs), v.psk_secret, "psk_secret");
});
