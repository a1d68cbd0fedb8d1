# chain: 1,000 concurrent executions of a 20-step NO_OP/transformation flow
# (b), with the default step chaining and with allma.max_chain_steps = 1
# (b1: every step of a path in its own transaction, batching only across
# executions).  Steps/s and write transactions/s, and the ratio to (a).
chain_runs() {
  local key=$1 label=$2 steps=() xacts=() secs x0 x1
  for r in $(seq 1 "$RUNS"); do
    x0=$(next_xid)
    secs=$("${PSQL[@]}" -c "CALL bench_throughput_run(1000, NULL)")
    x1=$(next_xid)
    steps+=("$(awk -v s="$secs" 'BEGIN {printf "%.0f", 20000 / s}')")
    xacts+=("$(awk -v s="$secs" -v d=$((x1 - x0)) 'BEGIN {printf "%.0f", d / s}')")
    echo "   run $r: ${secs}s, ${steps[-1]} steps/s, ${xacts[-1]} write transactions/s"
  done
  local sps xps
  sps=$(printf '%s\n' "${steps[@]}" | median)
  xps=$(printf '%s\n' "${xacts[@]}" | median)
  report "$key" "$label" "$sps steps/s (runs: ${steps[*]}); $xps write transactions/s" ""
  report "$key-ratio" "($key)/(a), steps/s over pgbench tps" \
    "$(awk -v a="$sps" -v b="${BASELINE_TPS:-0}" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}')" \
    "$3"
}
scenario_chain() {
  chain_runs b "(b) step throughput: 1,000 concurrent executions x 20 steps (allma.max_chain_steps default)" ">= 3"
  set_guc allma.max_chain_steps 1
  chain_runs b1 "(b1) the same, allma.max_chain_steps = 1" ""
  set_guc allma.max_chain_steps DEFAULT
}
