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
# The fixture runs, and one more whose name is markup: in a script element `<!--<script` makes
# the HTML parser wait for a second `</script>`, which would swallow the page's code.
mkdir "$out/runs"
cp -r tests/fixtures/runs/*/ "$out/runs/"
cp -r tests/fixtures/runs/muon_s0 "$out/runs/<!--<script"
"$bin" compare "$out/runs" --html "$out/report.html" >/dev/null
node tests/browser/check-report.mjs --html "$out/report.html" --runs "$out"/runs/*/ --mutants
