#!/usr/bin/env bash
# Keel's one test command: installs what the tests need when missing, then runs formatting,
# lints and every test in the workspace (Rust, notebooks, CLI checks against ../shared when present).
#
#   scripts/test.sh
#
# Environment: CARGO_TARGET_DIR (default: ~/.cache/keel/target, shared across clones so builds are
# reused), KEEL_VENV (default: ~/.cache/keel/venv, Python for the notebooks).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keel/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
step() { printf '\n== %s ==\n' "$*"; }

# --- 1. System packages the tests need (Debian). -------------------------------------------------
# pkg-config/libvirt-dev: the collector's libvirt helper (tests use the test:///default driver, no
# daemon); victoria-metrics: the real time-series
# server the collector's integration tests write to; zstd: unpacking the shared traces;
# default-jre-headless: runs the OpenKnowledge LCC parser, the oracle of keel-lcc's differential
# test (lcc/tests/ok_diff; its source-file launcher also compiles the small harness).
# qemu-system-x86, busybox-static, libvirt-daemon, libvirt-daemon-driver-qemu, libvirt-clients:
# the hypervisor lab of scripts/test.d/lab.sh (scripts/lab; virsh also for the agent's tests).
APT_PACKAGES=(pkg-config libvirt-dev victoria-metrics zstd xz-utils default-jre-headless
  qemu-system-x86 busybox-static libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    step "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "missing Debian packages: ${missing[*]}" >&2
    echo "run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest

# --- 2. Python for the notebooks. -----------------------------------------------------------------
if [ -f notebooks/requirements.txt ]; then
  VENV="${KEEL_VENV:-$HOME/.cache/keel/venv}"
  if [ ! -x "$VENV/bin/python" ]; then
    step "creating $VENV"
    python3 -m venv "$VENV"
  fi
  stamp="$VENV/.keel-requirements"
  if ! cmp -s notebooks/requirements.txt "$stamp"; then
    "$VENV/bin/pip" install -q -r notebooks/requirements.txt
    cp notebooks/requirements.txt "$stamp"
  fi
  export KEEL_PYTHON="$VENV/bin/python"
fi

# --- 3. Format and lints. -------------------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# --- 4. Tests. ------------------------------------------------------------------------------------
step "cargo nextest (workspace)"
cargo nextest run --workspace --locked --no-fail-fast
step "doctests"
cargo test --workspace --doc --locked -q

# --- 5. Checks that need ../shared (CI has it; the project's own tests do not). -------------------
for extra in scripts/test.d/*.sh; do
  [ -f "$extra" ] || continue
  step "$extra"
  bash "$extra"
done
echo
echo "all checks passed"
