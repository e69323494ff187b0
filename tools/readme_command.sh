#!/usr/bin/env bash
# Runs one of the README's two commands exactly as written there (so CI and the README cannot
# drift apart). Usage: tools/readme_command.sh demo|test
set -euo pipefail
cd "$(dirname "$0")/.."
marker="<!-- $1-command -->"
cmd=$(awk -v m="$marker" 'found && /^[^`]/ {print; exit} $0 == m {found=1}' README.md)
[ -n "$cmd" ] || { echo "README.md has no command after '$marker'" >&2; exit 2; }
echo "+ $cmd"
bash -c "$cmd"
