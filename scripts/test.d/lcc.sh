#!/usr/bin/env bash
# `keel-agent lcc check` against other people's LCC in ../shared/lcc (when present, as in CI):
# every file there is well-formed and must pass; truncated and damaged copies must fail with a
# file:line:col position. (The differential test against the OpenKnowledge parser,
# lcc/tests/ok_diff, runs in the workspace's nextest run; scripts/lcc-diff-long.sh runs it longer.)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/keel/target}"

# The async driver's tests need the `async` feature, which the workspace run does not enable.
cargo test -q -p keel-lcc --features async --test driver

shared="$root/../shared/lcc"
if [[ ! -d "$shared" ]]; then
    echo "lcc.sh: $shared not found; skipping the check against shared LCC texts"
    exit 0
fi
cargo build -q -p keel-agent --bin keel-agent
bin="$CARGO_TARGET_DIR/debug/keel-agent"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

shopt -s nullglob
files=("$shared"/*.lcc)
if (( ${#files[@]} == 0 )); then
    echo "lcc.sh: no .lcc files in $shared" >&2
    exit 1
fi
# The folder form gives one verdict per file.
verdicts="$("$bin" lcc check "$shared")"
for f in "${files[@]}"; do
    grep -qxF "$f: ok" <<<"$verdicts" || { echo "lcc.sh: no ok verdict for $f" >&2; exit 1; }
done
pass=${#files[@]}
fail=0

# Malformed variants derived from each file; each must be rejected with file:line:col.
expect_reject() {
    local f="$1" err
    if err="$("$bin" lcc check "$f" 2>&1)"; then
        echo "lcc.sh: accepted malformed $f:" >&2
        cat "$f" >&2
        fail=$((fail + 1))
        return
    fi
    if ! grep -qE "^$(printf '%s' "$f" | sed 's/[][\.*^$/]/\\&/g'):[0-9]+:[0-9]+: " <<<"$err"; then
        echo "lcc.sh: no file:line:col in the error for $f: $err" >&2
        fail=$((fail + 1))
        return
    fi
    pass=$((pass + 1))
}

for src in "${files[@]}"; do
    name="$(basename "$src" .lcc)"
    # 1. Truncated right after the last `then` (a dangling connective).
    body="$(cat "$src")"
    prefix="${body%then*}"
    if [[ "$prefix" != "$body" ]]; then
        printf '%s\nthen\n' "$prefix" > "$tmp/$name.dangling.lcc"
        expect_reject "$tmp/$name.dangling.lcc"
    fi
    # 2. Truncated just before the last closing parenthesis.
    prefix="${body%)*}"
    printf '%s\n' "$prefix" > "$tmp/$name.unclosed.lcc"
    expect_reject "$tmp/$name.unclosed.lcc"
    # 3. The first clause's `::` replaced by `:`.
    sed '0,/)[[:space:]]*::/s//) :/' "$src" > "$tmp/$name.colon.lcc"
    expect_reject "$tmp/$name.colon.lcc"
    # 4. A stray `=>` appended.
    { cat "$src"; printf '\n=>\n'; } > "$tmp/$name.stray.lcc"
    expect_reject "$tmp/$name.stray.lcc"
done

echo "lcc.sh: $pass passed, $fail failed"
(( fail == 0 ))
