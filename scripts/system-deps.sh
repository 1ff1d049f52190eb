#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, and only those that are missing.
# Idempotent; runs apt-get update at most once; needs root. Under CI (CI=true) a part that
# cannot be installed fails the run instead of being skipped.
set -euo pipefail

# package:probe — the probe proves the package is installed: a command name (found with
# `command -v`), or a path, possibly a glob (any match counts; e.g. PostgreSQL's binaries are not on
# PATH but under /usr/lib/postgresql/<version>/bin).
# postgresql: the service's end-to-end tests start a real server (tests/serve, initdb + pg_ctl).
# chromium: the report's browser test drives Debian's Chromium headless, and `miaudit report
#   --pdf` prints with it (tests/report).
# poppler-utils: the PDF test renders the printed report's pages (pdftoppm) and reads its text
#   (pdftotext, pdfinfo) (tests/report/test_pdf.py).
# dataset-fashion-mnist: the built-in dataset "fashion-mnist" reads its images from this package
#   (tests/datasets/test_fashion_mnist.py, benchmarks/bench_augmented_queries.py).
REQUIRED=(
  "postgresql:/usr/lib/postgresql/*/bin/initdb"
  "chromium:/usr/bin/chromium"
  "poppler-utils:pdftoppm"
  "dataset-fashion-mnist:/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"
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
retry() {
  for attempt in 1 2 3; do
    "$@" && return 0
    echo "system-deps: '$*' failed (attempt $attempt); retrying" >&2
    sleep $((attempt * 5))
  done
  return 1
}
echo "system-deps: installing ${missing[*]}" >&2
retry apt-get update -q || { echo "system-deps: apt-get update failed" >&2; exit 1; }
retry apt-get install -y -q "${missing[@]}" || { echo "system-deps: could not install ${missing[*]}" >&2; exit 1; }

for entry in "${REQUIRED[@]}"; do
  probe=${entry#*:}
  probe_ok "$probe" || { echo "system-deps: ${entry%%:*} installed but $probe is missing" >&2; exit 1; }
done
