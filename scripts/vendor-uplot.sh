#!/usr/bin/env bash
# Copy uPlot's browser build and license from the npm registry into assets/uplot/ (assets/README.md).
#   scripts/vendor-uplot.sh 1.6.32
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:?usage: scripts/vendor-uplot.sh VERSION}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "uplot@$version" >/dev/null && tar xzf "uplot-$version.tgz")
cp "$tmp/package/dist/uPlot.iife.min.js" "$tmp/package/dist/uPlot.min.css" "$tmp/package/LICENSE" assets/uplot/
(cd assets/uplot && sha256sum uPlot.iife.min.js uPlot.min.css LICENSE > SHA256SUMS)
echo "uPlot $version in assets/uplot/; integrity: $(npm view "uplot@$version" dist.integrity)"
