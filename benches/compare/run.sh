#!/usr/bin/env bash
# Runs the same benchmarks with mpr and with each system MPI found (Open MPI
# over TCP and over its default transport, MPICH), interleaved, and writes
# per-runtime CSVs, one table (markdown) and one plot per benchmark.
#
#   benches/compare/run.sh [-n RANKS] [-m MIN:MAX] [--rounds R] [--out DIR]
#                          [--timeout SECS] [--mpr-transport auto|tcp]
#                          [--mpi openmpi,openmpi-tcp,mpich] [--dup] [--bind]
#                          [BENCHMARK ...]
#
# --mpr-transport tcp runs mpr with MPR_TRANSPORT=tcp (labelled "mpr TCP"),
# to compare TCP with TCP; the default lets ranks of one host share memory.
# --mpi picks which system MPIs (and Open MPI transports) run beside it.
# --dup runs the collectives on a duplicate of the world communicator in
# every runtime (measures collectives on a derived communicator).
# --bind binds every runtime's ranks to cores round robin, also with more
# ranks than cores (mprun --bind-to core; Open MPI core:overload-allowed;
# MPICH -bind-to core): unbound, oversubscribed runs split the ranks
# unevenly across cores at random, and the figures swing with the split.
#
# Benchmarks default to `latency bw`; any name that both `mpr-bench` and
# `mpi_bench.c` know works. Each round runs mpr, then every MPI, in turn;
# with R rounds the value reported per size is the median over rounds.
# Output (default target/compare/):
#   NAME.<runtime>.csv  median per size      raw/   every run and its log
#   NAME.md             the table            NAME.svg, NAME.png  the plot
#   summary.md          all tables
# Each run is killed after --timeout seconds (default 600). A failing MPI
# run drops that runtime from the benchmark with a warning; a failing mpr
# run stops the script.
set -euo pipefail

usage() {
    sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

die() {
    echo "run.sh: $*" >&2
    exit 1
}

note() {
    echo "run.sh: $*" >&2
}

ranks=2
sizes=""
rounds=1
limit=600
out=""
mpr_transport=auto
mpis="openmpi,openmpi-tcp,mpich"
extra_args=()
bind=0
benchmarks=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -n) [[ $# -ge 2 ]] || die "-n needs a rank count"; ranks="$2"; shift 2 ;;
        -m) [[ $# -ge 2 ]] || die "-m needs MIN:MAX"; sizes="$2"; shift 2 ;;
        --rounds) [[ $# -ge 2 ]] || die "--rounds needs a count"; rounds="$2"; shift 2 ;;
        --out) [[ $# -ge 2 ]] || die "--out needs a directory"; out="$2"; shift 2 ;;
        --timeout) [[ $# -ge 2 ]] || die "--timeout needs seconds"; limit="$2"; shift 2 ;;
        --mpr-transport) [[ $# -ge 2 ]] || die "--mpr-transport needs auto or tcp"; mpr_transport="$2"; shift 2 ;;
        --mpi) [[ $# -ge 2 ]] || die "--mpi needs a list"; mpis="$2"; shift 2 ;;
        --dup) extra_args=(--dup); shift ;;
        --bind) bind=1; shift ;;
        -h | --help) usage 0 ;;
        -*) echo "run.sh: unknown option $1" >&2; usage 2 ;;
        *) benchmarks+=("$1"); shift ;;
    esac
done
[[ "$ranks" =~ ^[0-9]+$ && "$ranks" -ge 2 ]] || die "-n must be a number of ranks >= 2, got '$ranks'"
[[ "$rounds" =~ ^[0-9]+$ && "$rounds" -ge 1 ]] || die "--rounds must be a number >= 1, got '$rounds'"
[[ "$limit" =~ ^[0-9]+$ && "$limit" -ge 1 ]] || die "--timeout must be seconds >= 1, got '$limit'"
[[ -z "$sizes" || "$sizes" =~ ^[0-9]*:?[0-9]+$ ]] || die "-m must be MIN:MAX in bytes, got '$sizes'"
[[ "$mpr_transport" == auto || "$mpr_transport" == tcp ]] || die "--mpr-transport must be auto or tcp"
mpr_bind=() ompi_bind=() mpich_bind=()
if [[ "$bind" == 1 ]]; then
    mpr_bind=(--bind-to core) ompi_bind=(--bind-to core:overload-allowed) mpich_bind=(-bind-to core)
fi
[[ ${#benchmarks[@]} -gt 0 ]] || benchmarks=(latency bw)
wants() { [[ ",$mpis," == *",$1,"* ]]; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
out="${out:-$root/target/compare}"
mkdir -p "$out/raw" "$out/bin"
out="$(cd "$out" && pwd)"

size_args=()
[[ -z "$sizes" ]] || size_args=(-m "$sizes")
as_root=()
[[ "$(id -u)" -ne 0 ]] || as_root=(--allow-run-as-root)

# Runtimes: parallel arrays of label and slug (file names; `launch` key).
labels=()
slugs=()

add_runtime() { # label slug
    labels+=("$1")
    slugs+=("$2")
}

join() { # separator words...
    local separator="$1" result="$2"
    shift 2
    for word in "$@"; do result+="$separator$word"; done
    echo "$result"
}

# launch SLUG ARGS...: runs the benchmark program of runtime SLUG with ARGS,
# under `timeout` so that a hung job cannot stall the whole comparison.
launch() {
    local slug="$1"
    shift
    case "$slug" in
        mpr) MPR_TRANSPORT="$mpr_transport" timeout "$limit" "$mprun" "${mpr_bind[@]}" -n "$ranks" "$bench" "$@" ;;
        openmpi-tcp)
            timeout "$limit" "$ompi_run" "${as_root[@]}" "${ompi_bind[@]}" --oversubscribe -n "$ranks" \
                --mca btl tcp,self --mca btl_tcp_if_include lo "$out/bin/mpi_bench.openmpi" "$@"
            ;;
        openmpi) timeout "$limit" "$ompi_run" "${as_root[@]}" "${ompi_bind[@]}" --oversubscribe -n "$ranks" "$out/bin/mpi_bench.openmpi" "$@" ;;
        mpich) timeout "$limit" "$mpich_run" "${mpich_bind[@]}" -n "$ranks" "$out/bin/mpi_bench.mpich" "$@" ;;
        *) die "unknown runtime $slug" ;;
    esac
}

build_mpi_bench() { # mpicc output
    "$1" -O2 -o "$2" benches/compare/mpi_bench.c || die "$1 failed to build mpi_bench.c"
}

echo "== building mpr (release)"
cargo build --release -p mpr-bench -p mpr-launcher
mprun="$root/target/release/mprun"
bench="$root/target/release/mpr-bench"
[[ -x "$mprun" && -x "$bench" ]] || die "release build did not produce $mprun and $bench"
if [[ "$mpr_transport" == tcp ]]; then add_runtime "mpr TCP" mpr; else add_runtime mpr mpr; fi

# Open MPI: mpicc/mpirun (or their .openmpi names) whose --version says Open MPI.
ompi_run="" ompi_cc=""
for suffix in .openmpi ""; do
    if command -v "mpirun$suffix" >/dev/null && command -v "mpicc$suffix" >/dev/null \
        && "mpirun$suffix" --version 2>&1 | grep -q "Open MPI"; then
        ompi_run="mpirun$suffix" ompi_cc="mpicc$suffix"
        break
    fi
done
if [[ -n "$ompi_run" ]]; then
    echo "== building mpi_bench with $ompi_cc ($("$ompi_run" --version 2>&1 | head -1))"
    build_mpi_bench "$ompi_cc" "$out/bin/mpi_bench.openmpi"
    wants openmpi-tcp && add_runtime "Open MPI TCP" openmpi-tcp
    wants openmpi && add_runtime "Open MPI" openmpi
else
    note "Open MPI not found (mpirun + mpicc reporting Open MPI); skipping it"
fi

# MPICH: mpirun.mpich/mpicc.mpich, or plain mpirun/mpicc if they are MPICH's.
mpich_run="" mpich_cc=""
for suffix in .mpich ""; do
    if command -v "mpirun$suffix" >/dev/null && command -v "mpicc$suffix" >/dev/null \
        && "mpirun$suffix" --version 2>&1 | grep -qi "HYDRA\|MPICH"; then
        mpich_run="mpirun$suffix" mpich_cc="mpicc$suffix"
        break
    fi
done
if [[ -n "$mpich_run" ]]; then
    echo "== building mpi_bench with $mpich_cc (MPICH)"
    build_mpi_bench "$mpich_cc" "$out/bin/mpi_bench.mpich"
    wants mpich && add_runtime MPICH mpich
else
    note "MPICH not found (mpirun.mpich + mpicc.mpich); skipping it"
fi
[[ ${#labels[@]} -gt 1 ]] || note "no system MPI found: the tables show mpr alone"

# median_csv OUT IN...: per size, the median value over the runs (same sizes
# in the same order in every run; the header comes from the first).
median_csv() {
    local target="$1"
    shift
    awk -F, '
        FNR == 1 { if (NR == 1) print; next }
        { if (!($1 in count)) order[++n] = $1; values[$1, ++count[$1]] = $2 }
        END {
            for (i = 1; i <= n; i++) {
                size = order[i]; k = count[size]
                for (a = 1; a <= k; a++) v[a] = values[size, a] + 0
                for (a = 2; a <= k; a++) for (b = a; b > 1 && v[b - 1] > v[b]; b--) { t = v[b]; v[b] = v[b - 1]; v[b - 1] = t }
                m = (k % 2) ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
                printf "%s,%.3f\n", size, m
            }
        }' "$@" >"$target"
}

# table NAME CSV...: markdown table with ratio columns mpr/MPI.
table() {
    local name="$1"
    shift
    local header_labels
    header_labels="$(printf '%s|' "${active_labels[@]}")"
    awk -F, -v name="$name" -v labels="$header_labels" -v ranks="$ranks" -v rounds="$rounds" '
        BEGIN { nl = split(labels, label, "|") - 1 }
        FNR == 1 { file++; column = $2; next }
        { if (file == 1) order[++n] = $1; value[file, $1] = $2 }
        END {
            if (column == "latencyus" || column == "avglatencyus") { unit = (column == "latencyus" ? "" : "average ") "latency (us)"; better = "lower is better: ratio < 1 means mpr is faster" }
            else if (column == "bandwidthmbs") { unit = "bandwidth (MB/s, 10^6 bytes)"; better = "higher is better: ratio > 1 means mpr is faster" }
            else { unit = column; better = "ratio = mpr / MPI" }
            printf "### %s: %s, %s\n\n", name, unit, better
            printf "%d ranks, median of %d round(s); ratio columns are mpr / MPI.\n\n", ranks, rounds
            line = "| size (B) |"; rule = "|---:|"
            for (f = 1; f <= nl; f++) { line = line " " label[f] " |"; rule = rule "---:|" }
            for (f = 2; f <= nl; f++) { line = line " mpr / " label[f] " |"; rule = rule "---:|" }
            print line; print rule
            for (i = 1; i <= n; i++) {
                size = order[i]; line = "| " size " |"
                for (f = 1; f <= nl; f++) line = line " " (((f, size) in value) ? sprintf("%.2f", value[f, size]) : "-") " |"
                for (f = 2; f <= nl; f++) {
                    if (((f, size) in value) && value[f, size] + 0 > 0) line = line sprintf(" %.2f |", value[1, size] / value[f, size])
                    else line = line " - |"
                }
                print line
            }
            print ""
        }' "$@"
}

summary="$out/summary.md"
{
    echo "# mpr vs system MPI"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -srm), $(nproc) cores; runtimes: $(join ", " "${labels[@]}")${extra_args[*]:+; collectives on a duplicate of the world communicator}${mpr_bind[*]:+; ranks bound to cores round robin}"
    echo
} >"$summary"

for name in "${benchmarks[@]}"; do
    echo "== $name: ${#labels[@]} runtime(s), $rounds round(s)"
    failed=()
    for ((round = 1; round <= rounds; round++)); do
        # Even rounds run the runtimes in reverse order: back-to-back
        # oversubscribed runs tend to alternate between a fast and a slow
        # split of the ranks over the cores, which a fixed order would hand
        # to the same runtime every round.
        order=("${!labels[@]}")
        if ((round % 2 == 0)); then
            order=()
            for ((j = ${#labels[@]} - 1; j >= 0; j--)); do order+=("$j"); done
        fi
        for i in "${order[@]}"; do
            [[ " ${failed[*]} " != *" $i "* ]] || continue
            raw="$out/raw/$name.${slugs[$i]}.$round"
            printf '   round %d: %-14s ' "$round" "${labels[$i]}"
            if launch "${slugs[$i]}" "$name" --csv "${size_args[@]}" "${extra_args[@]}" >"$raw.csv" 2>"$raw.log" \
                && head -1 "$raw.csv" | grep -q '^size,' && [[ $(wc -l <"$raw.csv") -ge 2 ]]; then
                echo "ok ($(($(wc -l <"$raw.csv") - 1)) sizes)"
            else
                echo "FAILED"
                note "${labels[$i]} failed on $name (exit status, timeout ${limit}s or no CSV)"
                note "its output: $raw.csv, its log: $raw.log:"
                tail -5 "$raw.log" >&2 || true
                [[ $i -ne 0 ]] || die "mpr failed; stopping"
                failed+=("$i")
            fi
        done
    done

    active_labels=()
    csvs=()
    for i in "${!labels[@]}"; do
        [[ " ${failed[*]} " != *" $i "* ]] || continue
        runs=()
        for ((round = 1; round <= rounds; round++)); do runs+=("$out/raw/$name.${slugs[$i]}.$round.csv"); done
        median_csv "$out/$name.${slugs[$i]}.csv" "${runs[@]}"
        active_labels+=("${labels[$i]}")
        csvs+=("$out/$name.${slugs[$i]}.csv")
    done

    table "$name" "${csvs[@]}" | tee "$out/$name.md"
    cat "$out/$name.md" >>"$summary"

    label_args=()
    for label in "${active_labels[@]}"; do label_args+=(--label "$label"); done
    title="$name: $(join " vs " "${active_labels[@]}") ($ranks ranks${extra_args[*]:+, duplicate communicator}${mpr_bind[*]:+, bound})"
    if [ "$name" = barrier ]; then
        # One point (size 0) per runtime: the table says it all.
        echo "   wrote $out/$name.md (no plot: barrier has no message size)"
        continue
    fi
    for ext in svg png; do
        "$bench" plot "${csvs[@]}" "${label_args[@]}" --title "$title" -o "$out/$name.$ext" \
            >/dev/null 2>"$out/raw/$name.plot.log" \
            || die "plotting $name failed: $(cat "$out/raw/$name.plot.log")"
    done
    echo "   wrote $out/$name.md, $out/$name.svg, $out/$name.png"
done
echo "== all tables: $summary"
