#!/usr/bin/env bash
# Build the release binary that runs on old customer servers (CentOS 7: glibc 2.17) and check it.
#   scripts/release.sh            -> target/x86_64-unknown-linux-gnu/release/airgap (glibc >= 2.17)
# Needs cargo-zigbuild (crates.io) and ziglang (PyPI); installs them when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=x86_64-unknown-linux-gnu
GLIBC=2.17
command -v cargo-zigbuild >/dev/null || cargo install --locked cargo-zigbuild
python3 -c 'import ziglang' 2>/dev/null || python3 -m pip install --quiet ziglang
rustup target list --installed 2>/dev/null | grep -q "^$TARGET$" || rustup target add "$TARGET" 2>/dev/null || true
cargo zigbuild --locked --release --target "$TARGET.$GLIBC"
bin=target/$TARGET/release/airgap
# The newest glibc symbol version the binary needs must not pass 2.17.
newest=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -t. -k1,1 -k2,2n -k3,3n -u | tail -1)
echo "release: $bin needs $newest at most" >&2
python3 - "$newest" "$GLIBC" <<'PY'
import sys
have = tuple(int(x) for x in sys.argv[1].removeprefix("GLIBC_").split("."))
limit = tuple(int(x) for x in sys.argv[2].split("."))
sys.exit(0 if have <= limit else f"release: the binary needs {sys.argv[1]}, newer than glibc {sys.argv[2]}")
PY
"$bin" --version
