#!/usr/bin/env bash
# The whole test suite: installs what the tests need (Debian packages), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
cargo test --locked "$@"
