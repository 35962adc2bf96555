#!/bin/sh
# config-reference.sh [BUILD] — rewrites the generated part of docs/config.md
# from the key table (jobgate-broker --config-reference).
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
doc=docs/config.md
begin='<!-- generated: jobgate-broker --config-reference; do not edit by hand -->'
end='<!-- end of generated reference -->'
tmp=$(mktemp)
sed "/^$begin\$/q" "$doc" >"$tmp"
"$build/broker/jobgate-broker" --config-reference >>"$tmp"
printf '\n%s\n' "$end" >>"$tmp"
mv "$tmp" "$doc"
echo "config-reference: $doc rewritten"
