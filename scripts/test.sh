#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: installs what is missing, then runs the
# typecheck, the linter, the TypeScript tests (tap, real hub and stand-ins) and the Python
# tests of the hub's spawner config. Ends with one line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/ensure-system.sh --with-browser || exit 1
bash scripts/ensure-node-modules.sh || exit 1

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
passed=0
failed=0
status=0

check() {
  local name=$1
  shift
  echo "== $name"
  if "$@"; then
    passed=$((passed + 1))
  else
    echo "!! $name failed"
    failed=$((failed + 1))
    status=1
  fi
}

check typecheck npx tsc --noEmit
check lint npx biome check .
check build npm run --silent build

echo "== tap"
npx tap --reporter=tap "$@" 2>&1 | tee "$out/tap.txt"
tap_status=${PIPESTATUS[0]}
summary=$(grep -E '^# \{ total: [0-9]+' "$out/tap.txt" | tail -n 1)
tap_total=$(sed -nE 's/.*total: ([0-9]+).*/\1/p' <<<"$summary")
tap_pass=$(sed -nE 's/.*pass: ([0-9]+).*/\1/p' <<<"$summary")
if [ -z "$tap_total" ]; then
  echo "!! tap printed no summary"
  failed=$((failed + 1))
  status=1
else
  passed=$((passed + ${tap_pass:-0}))
  failed=$((failed + tap_total - ${tap_pass:-0}))
fi
[ "$tap_status" -eq 0 ] || status=1

echo "== python"
/usr/bin/python3 -m unittest discover -s test/python -v 2>&1 | tee "$out/py.txt"
py_status=${PIPESTATUS[0]}
py_total=$(sed -nE 's/^Ran ([0-9]+) tests?.*/\1/p' "$out/py.txt" | tail -n 1)
py_failed=0
for n in $(sed -nE 's/^FAILED \((.*)\)/\1/p' "$out/py.txt" | grep -oE '(failures|errors)=[0-9]+' | cut -d= -f2); do
  py_failed=$((py_failed + n))
done
if [ -z "$py_total" ]; then
  echo "!! python ran no tests"
  failed=$((failed + 1))
  status=1
else
  passed=$((passed + py_total - py_failed))
  failed=$((failed + py_failed))
fi
[ "$py_status" -eq 0 ] || status=1

echo
echo "$passed passed, $failed failed"
exit $status
