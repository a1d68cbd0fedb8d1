# fork: one execution forking 10,000, 100,000 and 1,000,000 NO_OP branches,
# and 10,000 and 1,000,000 branches of one SQL step (COLLECT_ARRAY; from
# 1,001 results on the aggregate is built in SQL into allma.large_values),
# each width on freshly restarted workers: branches/s, the workers' private
# memory (RssAnon) peak, its ratio to the 10,000-branch run of the same
# flow, and VmHWM (which also counts shared-buffer pages a worker touched).
# FORK_WIDTHS / FORK_SQL_WIDTHS override the widths (the million-branch runs
# take minutes: one run each whatever --runs says).  Write transactions
# (next_xid) are counted across each run: commits/s and branches per commit
# beside branches/s (the run's own few statements included).  The 10,000-
# branch width, the memory reference, runs at least 3 times: one run lasts
# a third of a second, 6 samples of RssAnon at 50 ms, and its sampled peak
# alone moved between 9.8 and 13.1 MB from run to run (the million-branch
# run, sampled 700 times, between 12.5 and 13.7 MB).
fork_width() {
  local flow=$1 n=$2 key=$3 label=$4 runs=$RUNS list=() secs sampler peak x0 x1 xacts=()
  [ "$n" -ge 1000000 ] && runs=1
  [ "$n" -le 10000 ] && [ "$runs" -lt 3 ] && runs=3
  bench_restart
  : > "$WORK/rss.$flow.$n"
  sample_rss "$WORK/rss.$flow.$n" & sampler=$!
  for r in $(seq 1 "$runs"); do
    x0=$(next_xid)
    secs=$("${PSQL[@]}" -c "CALL bench_fork_flow_run('$flow', $n, NULL)")
    x1=$(next_xid)
    list+=("$(awk -v s="$secs" -v n="$n" 'BEGIN {printf "%.0f", n / s}')")
    xacts+=("$(awk -v s="$secs" -v x=$((x1 - x0)) -v n="$n" 'BEGIN {printf "%.0f write xacts/s, %.1f branches each", x / s, n / x}')")
    echo "   $flow $n branches, run $r: ${secs}s, ${list[-1]} branches/s, ${xacts[-1]}"
  done
  kill $sampler; wait $sampler 2>/dev/null || true
  peak=$(sort -n "$WORK/rss.$flow.$n" | tail -1)
  eval "FORK_PEAK_${flow}_$n=$peak"
  local base ratio="" xs
  xs=$(printf '%s; ' "${xacts[@]}"); xs=${xs%; }
  base=$(eval echo "\${FORK_PEAK_${flow}_10000:-}")
  [ -n "$base" ] && [ "$n" -ne 10000 ] && ratio="; $(awk -v a="$peak" -v b="$base" 'BEGIN {printf "%.2f", a / b}')x the 10,000-branch run"
  report "$key" "$label" \
    "$(printf '%s\n' "${list[@]}" | median) branches/s (runs: ${list[*]}; $xs); peak worker RssAnon $(awk -v k="$peak" 'BEGIN {printf "%.1f", k / 1024}') MB$ratio; VmHWM $(( $(worker_hwm) / 1024 )) MB" \
    ">= 15,000 branches/s, RssAnon <= 1.2x the 10,000-branch run"
}

scenario_fork() {
  local n
  for n in ${FORK_WIDTHS:-10000 100000 1000000}; do
    fork_width fanout "$n" "d$n" "(d) fan-out, $n NO_OP branches, COLLECT_ARRAY"
  done
  # the bench starts executions as the bootstrap superuser (as soak.sh)
  set_guc allma.allow_superuser_sql_steps on
  for n in ${FORK_SQL_WIDTHS:-10000 1000000}; do
    fork_width fanout_sql "$n" "dsql$n" "(d) fan-out, $n branches of one SQL step, COLLECT_ARRAY"
  done
  set_guc allma.allow_superuser_sql_steps DEFAULT
}
