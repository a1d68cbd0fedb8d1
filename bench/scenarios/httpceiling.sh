# httpceiling: allma's API_CALL and LLM_INVOCATION steps against the
# practical ceiling of this machine, measured in the same run: bench/loadgen.c,
# a bare libcurl-multi client (built here with gcc ... -lcurl), sends the same
# requests to the same mock (500 ms latency) with the same number in flight.
#
# Load: N = 3 x C requests with at most C in flight (C = 2,000 and 5,000),
# the next request starting as soon as one completes -- sustained arrivals
# (the in-flight set is refilled twice over), not one burst.  loadgen: from
# the first request to the last completion.  allma: N executions of a
# one-step flow started in one transaction, from its commit to the last
# execution's ended_at, with allma.http_max_in_flight = allma.http_max_per_host
# = C / allma.max_workers (the limits are per worker: the workers together
# keep at most C in flight, to the one provider host); also with the default
# limits.  Figures: completed
# requests (steps) per second, allma's share of the ceiling, and write
# transactions per second (commits) beside steps/s.
#
# HTTPCEILING_CONC overrides the concurrencies ("2000 5000").

ceiling_loadgen() {  # KEY LABEL N C [loadgen args...]: sets CEILING
  local key=$1 label=$2 n=$3 c=$4 list=() out
  shift 4
  for r in $(seq 1 "$RUNS"); do
    out=$("$WORK/loadgen" -c "$c" -n "$n" "$@") || { echo "   loadgen failed: $out"; }
    list+=("$(sed -n 's/.* per_second \([0-9]*\) .*/\1/p' <<< "$out")")
    echo "   loadgen run $r: $out"
  done
  CEILING=$(printf '%s\n' "${list[@]}" | median)
  report "$key" "$label" "$CEILING requests/s (runs: ${list[*]})" ""
}

ceiling_allma() {  # KEY PROC LABEL N: steps/s of N executions, ratio to CEILING
  local key=$1 proc=$2 label=$3 n=$4 list=() xacts=() secs x0 x1 fds=0 f
  clear_history
  "${PSQL[@]}" -c "CALL $proc(200, '$MOCK_URL', NULL)" >/dev/null   # warm-up: connections, plans
  for r in $(seq 1 "$RUNS"); do
    clear_history
    x0=$(next_xid)
    secs=$("${PSQL[@]}" -c "CALL $proc($n, '$MOCK_URL', NULL)")
    x1=$(next_xid)
    # sockets the workers still hold (the connection cache) and their peak memory
    for p in $(worker_pids); do f=$(ls "/proc/$p/fd" 2>/dev/null | wc -l); [ "$f" -gt "$fds" ] && fds=$f; done
    list+=("$(awk -v s="$secs" -v n="$n" 'BEGIN {printf "%.0f", n / s}')")
    xacts+=("$(awk -v s="$secs" -v d=$((x1 - x0)) 'BEGIN {printf "%.0f", d / s}')")
    echo "   run $r: ${secs}s, ${list[-1]} steps/s, ${xacts[-1]} write transactions/s"
  done
  local sps xps
  sps=$(printf '%s\n' "${list[@]}" | median)
  xps=$(printf '%s\n' "${xacts[@]}" | median)
  report "$key" "$label" \
    "$sps steps/s (runs: ${list[*]}), $xps write transactions/s; $(awk -v a="$sps" -v c="$CEILING" 'BEGIN {printf "%.0f", 100 * a / c}') % of the ceiling; workers' peak VmHWM $(( $(worker_hwm) / 1024 )) MB, up to $fds open files each" \
    ">= 90 % of the ceiling"
}

scenario_httpceiling() {
  gcc -O2 -o "$WORK/loadgen" "$SRC/bench/loadgen.c" -lcurl
  bench_restart
  local body='{"model":"mock-slow-500","messages":[{"role":"user","content":"Answer about 1"}],"response_format":{"type":"json_object"}}'
  local workers
  workers=$("${PSQL[@]}" -c "SHOW allma.max_workers")
  for c in ${HTTPCEILING_CONC:-2000 5000}; do
    local n=$((3 * c)) per=$((c / workers))
    ceiling_loadgen "g-api-$c" "(g) ceiling: loadgen, $n GETs, $c in flight, mock 500 ms" "$n" "$c" \
      "$MOCK_URL/echo?latency_ms=500"
    set_guc allma.http_max_in_flight "$per"
    set_guc allma.http_max_per_host "$per"
    ceiling_allma "g-allma-api-$c" bench_api_run \
      "(g) allma: $n x API_CALL, $c in flight ($workers workers, allma.http_max_in_flight = allma.http_max_per_host = $per)" "$n"
    set_guc allma.http_max_in_flight DEFAULT
    set_guc allma.http_max_per_host DEFAULT
    ceiling_allma "g-allma-api-$c-default" bench_api_run \
      "(g) allma: $n x API_CALL, default limits" "$n"

    ceiling_loadgen "g-llm-$c" "(g) ceiling: loadgen, $n chat completions (POST), $c in flight, mock 500 ms" "$n" "$c" \
      -X POST -H 'Content-Type: application/json' -H 'Authorization: Bearer bench-key' -d "$body" \
      "$MOCK_URL/v1/chat/completions"
    set_guc allma.http_max_in_flight "$per"
    set_guc allma.http_max_per_host "$per"
    ceiling_allma "g-allma-llm-$c" bench_llm_run \
      "(g) allma: $n x LLM_INVOCATION, $c in flight ($workers workers, both limits = $per)" "$n"
    set_guc allma.http_max_in_flight DEFAULT
    set_guc allma.http_max_per_host DEFAULT
  done
}
