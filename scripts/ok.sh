#!/usr/bin/env bash
# Every gate CI runs, in order: format, lint, type check, doc lint, publish dry run,
# then the test suite under Deno, Bun and Node (node --test last: CI reads its summary).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"

step() { printf '\n== %s\n' "$*" >&2; }

step "nats-server (for the relay's scale-out tests)"
bash scripts/nats.sh install || echo "warning: nats-server is not installed; its tests skip (and fail under CI=true)" >&2

step "chromium (for the SDK's browser test)"
bash scripts/chromium.sh install || echo "warning: chromium is not installed; the browser test skips (and fails under CI=true)" >&2

step "versions"
printf 'deno %s | node %s | bun %s\n' "$(deno --version | head -1 | cut -d' ' -f2)" \
  "$(node --version)" "$(bun --version)" >&2

step "deno fmt --check"
deno fmt --check
step "deno lint"
deno lint
step "deno check"
deno check mod.ts mcp.ts transport.ts cli.ts src/ tests/ $( [ -d examples ] && ls examples/*.ts 2>/dev/null ) $( [ -d bench ] && ls bench/*.ts 2>/dev/null )
step "deno doc --lint"
deno doc --lint mod.ts mcp.ts transport.ts
step "deno test --doc (the entry points' examples, and those of the classes they export)"
deno test -A --doc mod.ts mcp.ts transport.ts src/channel/manager.ts src/relay/test_relay.ts \
  src/mcp/server.ts src/mcp/transport.ts src/mcp/client_transport.ts src/mcp/serve_channel.ts
step "deno publish --dry-run"
deno publish --dry-run --allow-dirty

step "tests: deno"
deno test -A --parallel tests/
step "tests: bun"
bun test --timeout 180000 tests/
step "tests: node"
node --test --test-concurrency=1 --test-timeout=300000 tests/
