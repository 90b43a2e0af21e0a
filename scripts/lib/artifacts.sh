# Build steps shared by scripts/test-packaging and scripts/homes-e2e, so both
# test the same artifacts and the second script finds them already built.
# Source it from the repository root with CARGO_TARGET_DIR exported; logs go
# to stderr, results (paths) to stdout.

CARGO_DEB_VERSION="${CARGO_DEB_VERSION:-3.8.0}"
STATIC_TRIPLE="$(uname -m)-unknown-linux-gnu"
export PATH="$HOME/.cargo/bin:$PATH"

# cargo-deb, pinned, into ~/.cargo/bin (once).
ensure_cargo_deb() {
  if ! cargo deb --version 2>/dev/null | grep -qF "$CARGO_DEB_VERSION"; then
    echo "installing cargo-deb $CARGO_DEB_VERSION" >&2
    cargo install --locked --version "$CARGO_DEB_VERSION" cargo-deb >&2
  fi
}

# Builds the .deb from Cargo.toml's [package.metadata.deb]; prints its path.
build_deb() {
  ensure_cargo_deb
  local deb
  deb="$(cargo deb | tail -n 1)"
  if [[ ! -f "$deb" ]]; then
    echo "cargo deb did not print a .deb path: $deb" >&2
    return 1
  fi
  printf '%s\n' "$deb"
}

# Builds the static (glibc, crt-static) meshinit and the project's test
# programs; prints the directory that holds them. One fixed set of binaries
# and flags, so that every caller reuses the same build.
build_static() {
  # --target keeps RUSTFLAGS off build.rs and the proc macros, which run on the host.
  env "CARGO_TARGET_$(echo "$STATIC_TRIPLE" | tr 'a-z-' 'A-Z_')_RUSTFLAGS=-C target-feature=+crt-static" \
    cargo build --release --locked --target "$STATIC_TRIPLE" \
    --bin meshinit --bin meshinit-test-app --bin fake-kuma-dp >&2 || return 1
  printf '%s\n' "$CARGO_TARGET_DIR/$STATIC_TRIPLE/release"
}
