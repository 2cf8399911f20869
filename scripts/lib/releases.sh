# Sourced by the bench scripts: release builds of the previous release and of this tree into
# one target dir ($CARGO_TARGET_DIR), each binary copied out before the next build replaces it.
# Needs: $work (a scratch dir; its prev-src worktree is removed by the caller's trap too).

# build_prev_release REV DEST: builds REV from a git worktree and copies its binary to DEST.
build_prev_release() {
  git worktree add --detach "$work/prev-src" "$1" >/dev/null 2>&1
  (cd "$work/prev-src" && cargo build --release --locked -q)
  cp "$CARGO_TARGET_DIR/release/helios-infra" "$2"
  git worktree remove --force "$work/prev-src"
}

# build_this_release DEST [PREV]: builds this tree and copies its binary to DEST; with PREV,
# fails when the two binaries are the same file content (nothing to compare).
build_this_release() {
  # Cargo keeps a path package's dependency info relative to its root, so the worktree's
  # build would pass for this tree's: make this tree's sources newer than it.
  touch src/lib.rs src/main.rs
  cargo build --release --locked -q
  cp "$CARGO_TARGET_DIR/release/helios-infra" "$1"
  if [[ -n ${2:-} ]] && cmp -s "$2" "$1"; then
    echo "the previous release and this tree built the same binary: nothing to compare" >&2
    return 1
  fi
}
