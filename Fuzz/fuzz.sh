#!/usr/bin/env bash
# Builds the libFuzzer targets and runs each for a bounded time; fails when one finds a crash,
# a hang (an input running longer than FUZZ_TIMEOUT seconds), a leak or an out-of-memory.
#
#   Fuzz/fuzz.sh                       # every target, FUZZ_SECONDS (60) each
#   FUZZ_SECONDS=300 Fuzz/fuzz.sh FuzzRules
#   Fuzz/.build/debug/FuzzRules CRASH-FILE     # replays one input (a crash's artifact)
#
# Seeds are gathered at run time into Fuzz/.build/fuzz/seeds/TARGET (rebuilt each run, never
# committed): captures/ and examples/ of this repository, and ../shared/captures and
# ../shared/rulesets when present. What libFuzzer finds new goes to Fuzz/.build/fuzz/corpus/TARGET
# (kept between runs); crashing inputs to Fuzz/.build/fuzz/artifacts/TARGET/.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SWIFT=${SWIFT:-swift}
SECONDS_EACH=${FUZZ_SECONDS:-60}
TIMEOUT=${FUZZ_TIMEOUT:-10}
WORK=${FUZZ_WORK:-$ROOT/Fuzz/.build/fuzz}
SHARED=${FUZZ_SHARED:-$ROOT/../shared}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(FuzzWire FuzzCapture FuzzRules FuzzNetModel)

if [ "${FUZZ_NO_BUILD:-0}" != 1 ]; then
  echo "== building the fuzz targets (-sanitize=fuzzer,address)"
  # The linker's "Cannot export local symbol '__asan_check_...'" warnings are noise (gold and
  # ASan's outlined checks); everything else is shown.
  $SWIFT build --package-path Fuzz --scratch-path Fuzz/.build \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library 2>&1 \
    | grep -v "Cannot export local symbol"
  [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "fuzz: build failed" >&2; exit 1; }
fi
BIN=$ROOT/Fuzz/.build/debug
# A trap's message is what matters; Swift's backtracer, reading the stack of an instrumented
# process, trips ASan itself and buries it.
export SWIFT_BACKTRACE=enable=no

# seed DIR FILE...: copies the existing, not too large files into DIR.
seed() {
  local dir=$1; shift
  local f
  for f in "$@"; do
    [ -f "$f" ] || continue
    [ "$(stat -c %s "$f")" -le "$MAXSEED" ] || continue
    cp "$f" "$dir/$(echo "$f" | tr '/' '_')"
  done
}

failed=()
summary=()
for t in "${TARGETS[@]}"; do
  seeds=$WORK/seeds/$t corpus=$WORK/corpus/$t artifacts=$WORK/artifacts/$t
  rm -rf "$seeds"; mkdir -p "$seeds" "$corpus" "$artifacts"
  opts=()
  shopt -s nullglob globstar
  case $t in
    FuzzWire)
      opts=(-max_len=4096)
      if command -v python3 >/dev/null; then
        python3 Fuzz/seeds.py "$seeds" 3000 captures/*.pcap "$SHARED"/captures/**/*.pcap "$SHARED"/captures/**/*.pcapng
      else
        echo "fuzz: no python3, FuzzWire starts without seed frames"
      fi ;;
    FuzzCapture)
      MAXSEED=65536; opts=(-max_len=65536)
      seed "$seeds" captures/*.pcap "$SHARED"/captures/**/*.pcap "$SHARED"/captures/**/*.pcapng ;;
    FuzzRules)
      MAXSEED=32768; opts=(-max_len=8192 -dict=Fuzz/dict/rules.dict)
      seed "$seeds" examples/**/*.rules examples/**/*.vns3 "$SHARED"/rulesets/*.rules "$SHARED"/rulesets/*.iptables-cmds ;;
    FuzzNetModel)
      MAXSEED=32768; opts=(-max_len=8192 -dict=Fuzz/dict/netmodel.dict)
      seed "$seeds" examples/edge/network examples/**/*.network ;;
    *) echo "fuzz: unknown target $t" >&2; exit 2 ;;
  esac
  shopt -u nullglob globstar
  echo "== $t: ${SECONDS_EACH}s, $(ls "$seeds" | wc -l) seeds, $(ls "$corpus" | wc -l) inputs in the kept corpus"
  log=$WORK/$t.log
  "$BIN/$t" "$corpus" "$seeds" -max_total_time="$SECONDS_EACH" -timeout="$TIMEOUT" -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "${opts[@]}" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  if [ $rc -ne 0 ]; then
    echo "fuzz: $t FAILED (exit $rc); the end of $log:" >&2
    grep -v '^#[0-9]' "$log" | tail -60 >&2
    ls -1 "$artifacts" >&2
    failed+=("$t")
    summary+=("$t: FAILED after ${runs:-?} runs, artifacts in $artifacts")
  else
    summary+=("$t: ${SECONDS_EACH}s, ${runs:-?} runs, ${eps:-?} exec/s, $cov, no crash")
  fi
done

echo "== fuzz summary"
printf '  %s\n' "${summary[@]}"
[ ${#failed[@]} -eq 0 ] || { echo "fuzz: crashes in: ${failed[*]}" >&2; exit 1; }
