#!/usr/bin/env bash
# Set the machine up (idempotent) and run fastnet's whole test suite. Run as root.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$REPO/scripts/setup.sh"
cd "$REPO"
exec "$REPO/.venv/bin/pytest" "$@"
