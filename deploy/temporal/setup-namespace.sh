#!/bin/sh
# One-shot job (docker-compose service temporal-setup, image temporalio/admin-tools):
# waits until the Temporal frontend serves, creates the namespace the journeys run in, and
# registers the custom search attributes the workflows upsert (workflows/common.py).
# Safe to run again: existing namespaces and attributes are left as they are.
#   TEMPORAL_ADDRESS              host:port of the frontend (temporal:7233)
#   TEMPORAL_NAMESPACE            namespace to create (default)
#   TEMPORAL_NAMESPACE_RETENTION  how long closed workflow histories are kept (720h)
#   JOURNEY_SEARCH_ATTRIBUTES     space-separated Name=Type pairs
set -eu

ADDRESS="${TEMPORAL_ADDRESS:-temporal:7233}"
NAMESPACE="${TEMPORAL_NAMESPACE:-default}"
RETENTION="${TEMPORAL_NAMESPACE_RETENTION:-720h}"
ATTRIBUTES="${JOURNEY_SEARCH_ATTRIBUTES:?set JOURNEY_SEARCH_ATTRIBUTES (Name=Type ...)}"
TRIES="${SETUP_TRIES:-60}"

# The CLI is given an IPv4 address: Temporal's own compose samples do the same to avoid the
# resolver handing gRPC an address the frontend does not listen on.
host="${ADDRESS%:*}"
port="${ADDRESS##*:}"
ip="$(getent ahostsv4 "$host" 2>/dev/null | awk 'NR == 1 { print $1 }')" || ip=""
if [ -n "$ip" ]; then
  ADDRESS="$ip:$port"
fi

retry() {
  # retry DESCRIPTION COMMAND...: run COMMAND until it succeeds, at most $TRIES times.
  what="$1"
  shift
  n=1
  until "$@"; do
    if [ "$n" -ge "$TRIES" ]; then
      echo "gave up: $what (after $n tries)" >&2
      return 1
    fi
    n=$((n + 1))
    sleep 2
  done
}

echo "waiting for the Temporal frontend at $ADDRESS"
retry "Temporal frontend healthy" \
  temporal operator cluster health --address "$ADDRESS" >/dev/null

if temporal operator namespace describe --address "$ADDRESS" --namespace "$NAMESPACE" \
  >/dev/null 2>&1; then
  echo "namespace $NAMESPACE exists"
else
  echo "creating namespace $NAMESPACE (retention $RETENTION)"
  retry "create namespace $NAMESPACE" \
    temporal operator namespace create --address "$ADDRESS" --namespace "$NAMESPACE" \
    --retention "$RETENTION"
fi

registered() {
  temporal operator search-attribute list --address "$ADDRESS" --namespace "$NAMESPACE" \
    2>/dev/null | grep -qw "$1"
}

ensure_attribute() {
  # A new namespace takes a few seconds to reach every service's cache, so a create
  # can fail at first; each round re-checks before creating again.
  registered "$1" && return 0
  temporal operator search-attribute create --address "$ADDRESS" --namespace "$NAMESPACE" \
    --name "$1" --type "$2" || true
  registered "$1"
}

for pair in $ATTRIBUTES; do
  name="${pair%%=*}"
  type="${pair#*=}"
  if [ -z "$name" ] || [ "$name" = "$pair" ]; then
    echo "bad entry in JOURNEY_SEARCH_ATTRIBUTES: '$pair' (want Name=Type)" >&2
    exit 1
  fi
  retry "register search attribute $name" ensure_attribute "$name" "$type"
  echo "search attribute $name ($type) registered"
done

echo "namespace $NAMESPACE is ready"
