# fork: one execution forking 10,000 and 100,000 NO_OP branches
# (COLLECT_ARRAY), on freshly started workers: branches/s, the workers'
# private memory (RssAnon) peak and VmHWM (which also counts shared-buffer
# pages a worker touched).
scenario_fork() {
  bench_restart
  local n list bps secs sampler
  for n in 10000 100000; do
    list=()
    : > "$WORK/rss.$n"
    sample_rss "$WORK/rss.$n" & sampler=$!
    for r in $(seq 1 "$RUNS"); do
      secs=$("${PSQL[@]}" -c "CALL bench_fork_run($n, NULL)")
      list+=("$(awk -v s="$secs" -v n="$n" 'BEGIN {printf "%.0f", n / s}')")
      echo "   $n branches, run $r: ${secs}s, ${list[-1]} branches/s"
    done
    kill $sampler; wait $sampler 2>/dev/null || true
    bps=$(printf '%s\n' "${list[@]}" | median)
    report "d$n" "(d) fan-out, $n NO_OP branches, COLLECT_ARRAY" \
      "$bps branches/s (runs: ${list[*]}); peak worker RssAnon $(( $(sort -n "$WORK/rss.$n" | tail -1) / 1024 )) MB; VmHWM so far $(( $(worker_hwm) / 1024 )) MB" \
      ">= 5,000 branches/s"
  done
}
