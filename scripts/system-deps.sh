#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, and only those that are missing.
# Idempotent; runs apt-get update at most once; needs root. Under CI (CI=true) a part that
# cannot be installed fails the run instead of being skipped.
set -euo pipefail

# package:probe — the probe proves the package is installed: a command name (found with
# `command -v`), or a path, possibly a glob (any match counts; e.g. PostgreSQL's binaries are not on
# PATH but under /usr/lib/postgresql/<version>/bin).
# postgresql: the service's end-to-end tests start a real server (tests/serve, initdb + pg_ctl).
REQUIRED=(
  "postgresql:/usr/lib/postgresql/*/bin/initdb"
  ${MIAUDIT_SYSTEM_PACKAGES:-}
)

probe_ok() {
  local probe=$1
  if [[ $probe == */* ]]; then
    compgen -G "$probe" >/dev/null
  else
    command -v "$probe" >/dev/null 2>&1
  fi
}

missing=()
for entry in "${REQUIRED[@]}"; do
  pkg=${entry%%:*}; probe=${entry#*:}
  if ! probe_ok "$probe"; then
    missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: missing ${missing[*]} and not root: install them with apt-get" >&2
  [ "${CI:-}" = "true" ] && exit 1
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
for attempt in 1 2 3; do
  if apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    exit 0
  fi
  echo "system-deps: attempt $attempt failed; retrying" >&2
  sleep $((attempt * 5))
done
echo "system-deps: could not install ${missing[*]}" >&2
exit 1
