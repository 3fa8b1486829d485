#!/usr/bin/env bash
# The browser check of `speedrun compare --html` (tests/browser/README.md): installs what it needs
# (Debian's chromium, the harness's pinned npm packages), writes the report of the fixture runs
# with the given speedrun binary, checks it in headless chromium, then checks that broken copies
# of the page fail the same checks.
#   tests/browser/run.sh [path/to/speedrun]   (default target/debug/speedrun, built by cargo test)
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="${1:-target/debug/speedrun}"
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
(cd tests/browser && npm ci --no-audit --no-fund --silent)
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$bin" compare tests/fixtures/runs --html "$out/report.html" >/dev/null
node tests/browser/check-report.mjs --html "$out/report.html" --runs tests/fixtures/runs/*/ --mutants
