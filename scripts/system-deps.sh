#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, and only those that are missing.
# Idempotent; runs apt-get update at most once; needs root. Under CI (CI=true) a part that
# cannot be installed fails the run instead of being skipped.
set -euo pipefail

# package:command-that-proves-it-is-installed
REQUIRED=(${MIAUDIT_SYSTEM_PACKAGES:-})

missing=()
for entry in "${REQUIRED[@]}"; do
  pkg=${entry%%:*}; probe=${entry#*:}
  if ! command -v "$probe" >/dev/null 2>&1 && ! dpkg -s "$pkg" >/dev/null 2>&1; then
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
