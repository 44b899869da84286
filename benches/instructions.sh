#!/usr/bin/env bash
# The daemon's user-space instructions per message, counted by callgrind: the same count
# for the same binary, config and corpus whatever else the machine is doing, where the CPU
# time per message (`repmilter bench --target-pid`) moves by 5-10% from one run to the next
# on a shared 2-core VM. The kernel's share (TCP, about a third of the CPU time) and cache
# misses are not in it: it tells whether a change does less work, not what a message costs.
#
#   bash benches/instructions.sh [--held-out] [CONFIG] [MESSAGES] [BINARY]
#
# CONFIG defaults to config/repmilter.toml (the shipped rules), MESSAGES to 1000 (measured
# after 300 of warm-up, 4 sessions, one message per connection), BINARY to
# target/release/repmilter (`cargo build --release` first). The daemon runs under valgrind
# (Debian's valgrind) on the config's `listen` address, which must be free. The corpus comes
# from benches/fetch-corpus.sh. About half a minute.
#
# The default measures the corpus' first messages (easy ham: short, plain text), after
# warming up on the first 300 of them. `--held-out` is the daemon after a while in service:
# warmed up on five messages in six of the whole corpus (every folder, spam and HTML among
# them), then measured on up to 1,007 of the sixth it has never seen, where the regexes'
# lazy DFAs still meet new states. About four minutes.
#
# PROFILE_DIR=DIR keeps callgrind's profile there (cg.out.*, for `callgrind_annotate
# --inclusive=yes DIR/cg.out.*`), to see where the instructions went.
set -euo pipefail
cd "$(dirname "$0")/.."
held_out=false
if [ "${1:-}" = --held-out ]; then
    held_out=true
    shift
fi
config=$(realpath "${1:-config/repmilter.toml}")
messages=${2:-1000}
binary=$(realpath "${3:-target/release/repmilter}")
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
bash benches/fetch-corpus.sh >/dev/null
corpus=$(realpath target/corpus/package/data)
target=$(grep -m1 -o '^listen *= *"inet:[^"]*"' "$config" | sed 's/.*"\(inet:[^"]*\)"/\1/')
[ -n "$target" ] || { echo "$config: no inet listen address" >&2; exit 2; }
out=$(mktemp -d)
trap 'kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null; rm -rf "$out"' EXIT
warm_corpus=$corpus
warm_messages=300
measure_corpus=$corpus
if $held_out; then
    mkdir "$out/warm" "$out/measure"
    i=0
    for f in "$corpus"/*/*.txt; do
        i=$((i + 1))
        name=$(basename "$(dirname "$f")")_$(basename "$f")
        if [ $((i % 6)) -eq 0 ]; then
            ln -s "$f" "$out/measure/$name"
        else
            ln -s "$f" "$out/warm/$name"
        fi
    done
    warm_corpus=$out/warm
    warm_messages=$(find "$warm_corpus" -name '*.txt' | wc -l)
    measure_corpus=$out/measure
fi
# Instrumentation starts after the warm-up: rule compilation and the first messages (lazy
# DFA states, caches) are not what a message costs.
(cd "$(dirname "$config")" && exec valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$out/cg.out" "$binary" serve --config "$(basename "$config")" \
    >/dev/null 2>"$out/daemon.err") &
daemon=$!
for _ in $(seq 120); do
    sleep 1
    "$binary" bench --target "$target" --corpus "$corpus" --messages 1 --concurrency 1 \
        >/dev/null 2>&1 && break
done
"$binary" bench --target "$target" --corpus "$warm_corpus" --messages "$warm_messages" \
    --concurrency 4 --timeout 60 >/dev/null
callgrind_control -i on "$daemon" >/dev/null 2>&1
"$binary" bench --target "$target" --corpus "$measure_corpus" --messages "$messages" \
    --concurrency 4 --timeout 60 | grep -E '^(messages|errors)'
callgrind_control -d "$daemon" >/dev/null 2>&1
callgrind_control -i off "$daemon" >/dev/null 2>&1
if [ -n "${PROFILE_DIR:-}" ]; then
    mkdir -p "$PROFILE_DIR"
    cp "$out"/cg.out.* "$PROFILE_DIR"/
fi
total=$(grep -h '^summary:' "$out"/cg.out.* | awk '{s += $2} END {printf "%.0f", s}')
mode=$($held_out && echo "held-out messages" || echo "the first messages")
echo "user-space instructions per message: $((total / messages)) ($mode; $binary, $config)"
