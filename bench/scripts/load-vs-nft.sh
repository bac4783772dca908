#!/bin/sh
# Loading a big ruleset: sluice's parse + check + compile (rules-mem, one thread, CPU time and peak RSS of
# the process) against the real `nft -f` into an empty throwaway network namespace (/usr/bin/time -v:
# user + system time and maximum RSS of the nft process), on the same generated files.
#
#   sudo bench/scripts/load-vs-nft.sh [ROUNDS [NFT_ROUNDS]]   # default 3 and 1; prints a markdown table
#
# sluice's figures are the best and the median of ROUNDS runs (CPU time: user + system of the loading
# thread; other load on a shared VM only adds to it, so the best run is the closest to the cost
# itself), nft's the best of NFT_ROUNDS (the load average is printed). Careful: `nft -f` of the 100k-rule mix (12,500 anonymous sets) keeps one core
# busy in the kernel for over two minutes: NFT_SKIP="mix-100000" leaves nft out of that case (and any other
# KIND-N listed).
# Needs root (ip netns), nft, /usr/bin/time, and `cargo build --release -p bench --bin rules-mem`.
set -eu
rounds=${1:-3}
nft_rounds=${2:-1}
bin=${RULES_MEM:-target/release/rules-mem}
ns=sluice-perf-$$
dir=$(mktemp -d /tmp/sluice-load.XXXXXX)
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT INT TERM
ip netns add "$ns"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); nft $(nft --version | cut -d' ' -f2)"
echo
echo "| workload | rules | source | sluice CPU, best (median) | sluice peak RSS | nft -f CPU | nft -f wall | nft -f peak RSS | nft list ruleset CPU | nft -f / sluice CPU |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for kind in simple mix; do
  for n in 10000 100000; do
    f=$dir/$kind-$n.nft
    "$bin" --emit "$n" "$kind" > "$f"
    size=$(stat -c %s "$f")
    best_rss=
    : > "$dir/cpus"
    i=0
    while [ $i -lt "$rounds" ]; do
      out=$("$bin" "$f")
      echo "$out" | sed -n 's/.*total \([0-9.]*\) ms.*/\1/p' >> "$dir/cpus"
      rss=$(echo "$out" | sed -n 's/.* \([0-9]*\) MB after compiling.*/\1/p')
      best_rss=$(printf '%s\n%s\n' "$rss" "${best_rss:-$rss}" | sort -n | head -1)
      i=$((i + 1))
    done
    best_cpu=$(sort -n "$dir/cpus" | head -1)
    med_cpu=$(sort -n "$dir/cpus" | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
    nft_cpu=-; nft_wall=-; nft_rss=-; list_cpu=-
    i=0
    case " ${NFT_SKIP:-} " in *" $kind-$n "*) i=$nft_rounds ;; *) nft_cpu=; nft_wall=; nft_rss=; list_cpu= ;; esac
    while [ $i -lt "$nft_rounds" ]; do
      ip netns exec "$ns" nft flush ruleset
      ip netns exec "$ns" /usr/bin/time -v nft -f "$f" 2> "$dir/time" >/dev/null
      c=$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {printf "%.0f", (u+s)*1000}' "$dir/time")
      w=$(awk -F': ' '/Elapsed/ {n=split($2,a,":"); printf "%.0f", (a[n-1]*60+a[n])*1000}' "$dir/time")
      r=$(awk -F': ' '/Maximum resident/ {printf "%d", $2/1024}' "$dir/time")
      ip netns exec "$ns" /usr/bin/time -v nft list ruleset 2> "$dir/time" >/dev/null
      l=$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {printf "%.0f", (u+s)*1000}' "$dir/time")
      nft_cpu=$(printf '%s\n%s\n' "$c" "${nft_cpu:-$c}" | sort -n | head -1)
      nft_wall=$(printf '%s\n%s\n' "$w" "${nft_wall:-$w}" | sort -n | head -1)
      nft_rss=$(printf '%s\n%s\n' "$r" "${nft_rss:-$r}" | sort -n | head -1)
      list_cpu=$(printf '%s\n%s\n' "$l" "${list_cpu:-$l}" | sort -n | head -1)
      i=$((i + 1))
    done
    ip netns exec "$ns" nft flush ruleset
    ratio=-
    [ "$nft_cpu" != "-" ] && ratio=$(awk -v a="$nft_cpu" -v b="$best_cpu" 'BEGIN {printf "%.1f×", a / b}')
    echo "| $kind | $n | $((size / 1024)) KB | ${best_cpu} (${med_cpu}) ms | ${best_rss} MB | ${nft_cpu} ms | ${nft_wall} ms | ${nft_rss} MB | ${list_cpu} ms | ${ratio} |"
  done
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
