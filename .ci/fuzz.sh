#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each and prints how many
# targets ran and the seconds each took.
#
#   .ci/fuzz.sh [FUZZTIME]      (default 30s; `make fuzz` and `make fuzz-short`)
#
# Targets are discovered from the module's test files (`go list` names each
# package's test files; every `func FuzzXxx(f *testing.F)` in them is a
# target), so a new fuzz target is run without being listed anywhere. This
# finds what `go test -list '^Fuzz' ./...` lists without linking a test
# binary per package (some 15 s of the short pass's budget here).
# Minimisation is bounded (FUZZMINIMIZETIME, default 100x) so that a new
# input found near the end cannot overrun the time. Go's fuzzer can still
# end a run with a bare "context deadline exceeded" when time runs out
# mid-input (a toolchain race, not a finding): such a run, and only such a
# run (no failing input written), is retried once.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
FUZZTIME=${1:-${FUZZTIME:-30s}}
MINTIME=${FUZZMINIMIZETIME:-100x}

pkgs=$("$GO" list -f '{{.ImportPath}} {{.Dir}} {{join .TestGoFiles " "}} {{join .XTestGoFiles " "}}' ./...)
targets=()
while read -r pkg dir files; do
	for f in $files; do
		for n in $(sed -nE 's/^func (Fuzz[A-Z0-9_][A-Za-z0-9_]*|Fuzz)\([A-Za-z_][A-Za-z0-9_]* \*testing\.F\).*/\1/p' "$dir/$f"); do
			targets+=("$pkg:$n")
		done
	done
done <<<"$pkgs"
if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi

fuzz_once() { # pkg name
	"$GO" test -run='^$' -fuzz="^$2\$" -fuzztime="$FUZZTIME" -fuzzminimizetime="$MINTIME" "$1" 2>&1
}

summary=()
total_ms=0
report() {
	echo
	echo "fuzz summary ($FUZZTIME each):"
	for s in ${summary[@]+"${summary[@]}"}; do echo "  $s"; done
	printf 'fuzz: %d of %d targets ran, %d.%01d s in all\n' "${#summary[@]}" "${#targets[@]}" $((total_ms / 1000)) $((total_ms % 1000 / 100))
}

for t in "${targets[@]}"; do
	pkg=${t%%:*} name=${t##*:}
	echo "fuzz $pkg $name for $FUZZTIME"
	start=$(date +%s%N)
	if ! out=$(fuzz_once "$pkg" "$name"); then
		echo "$out"
		if grep -q 'context deadline exceeded' <<<"$out" && ! grep -q 'Failing input written' <<<"$out"; then
			echo "fuzz $pkg $name: retrying once after the fuzzer's own deadline error"
			if ! out=$(fuzz_once "$pkg" "$name"); then
				echo "$out"
				report
				exit 1
			fi
		else
			report
			exit 1
		fi
	fi
	echo "$out" | grep -E '^fuzz: elapsed' | tail -1 || true
	ms=$((($(date +%s%N) - start) / 1000000))
	total_ms=$((total_ms + ms))
	summary+=("$(printf '%-26s %-44s %3d.%01d s' "$name" "${pkg#github.com/tearline/tearline/}" $((ms / 1000)) $((ms % 1000 / 100)))")
done
report
