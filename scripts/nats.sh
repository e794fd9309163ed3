#!/usr/bin/env bash
# NATS JetStream for the relay's scale-out tests (and for trying it by hand).
#   scripts/nats.sh install            install Debian's nats-server if it is missing (needs root)
#   scripts/nats.sh start DIR PORT [CLUSTER_PORT ROUTES]
#                                      run nats-server in the foreground: loopback only, JetStream
#                                      on, its store in DIR (exec, so the caller's pid is the server);
#                                      with CLUSTER_PORT and ROUTES (nats://127.0.0.1:P,… of every
#                                      node) a node of the JetStream cluster "skytale"
set -euo pipefail

case "${1:-}" in
  install)
    if command -v nats-server >/dev/null 2>&1; then
      echo "nats-server already installed: $(nats-server --version)" >&2
      exit 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
      echo "nats-server is missing; run as root (or: sudo apt-get install -y nats-server)" >&2
      exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq nats-server >/dev/null
    echo "installed $(nats-server --version)" >&2
    ;;
  start)
    dir="${2:?usage: scripts/nats.sh start DIR PORT}"
    port="${3:?usage: scripts/nats.sh start DIR PORT}"
    mkdir -p "$dir"
    cluster=()
    if [ -n "${4:-}" ]; then
      cluster=(--cluster_name skytale --cluster "nats://127.0.0.1:$4" --routes "${5:?ROUTES}")
    fi
    exec nats-server --addr 127.0.0.1 --port "$port" --jetstream --store_dir "$dir" \
      --server_name "skytale-test-$port" "${cluster[@]}"
    ;;
  *)
    echo "usage: scripts/nats.sh install | start DIR PORT [CLUSTER_PORT ROUTES]" >&2
    exit 2
    ;;
esac
