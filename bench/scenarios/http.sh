# http: 2,000 concurrent executions, each one API_CALL (e) or one
# LLM_INVOCATION (f, OpenAI-compatible mock, JSON mode) against the mock
# server with 500 ms latency, measured from the commit that started them to
# the last execution's ended_at.  Each run starts from vacuumed tables; one
# warm-up run is not counted.  Run with the HTTP limits named in the label.
http_runs() {
  local key=$1 proc=$2 label=$3 target=$4 list=() secs sampler
  : > "$WORK/rss.$key"
  clear_history
  "${PSQL[@]}" -c "CALL $proc(2000, '$MOCK_URL', NULL)" >/dev/null
  sample_rss "$WORK/rss.$key" & sampler=$!
  for r in $(seq 1 "$RUNS"); do
    clear_history
    secs=$("${PSQL[@]}" -c "CALL $proc(2000, '$MOCK_URL', NULL)")
    list+=("$(awk -v s="$secs" 'BEGIN {printf "%.0f", 2000 / s}')")
    echo "   run $r: ${secs}s, ${list[-1]} completed steps/s"
  done
  kill $sampler; wait $sampler 2>/dev/null || true
  report "$key" "$label" \
    "$(printf '%s\n' "${list[@]}" | median) completed steps/s (runs: ${list[*]}), 0 failed; peak worker RssAnon $(( $(sort -n "$WORK/rss.$key" | tail -1) / 1024 )) MB" \
    "$target"
}
scenario_http() {
  bench_restart
  http_runs e-default bench_api_run "(e) 2,000 x API_CALL, mock 500 ms, default HTTP limits (allma.http_max_in_flight, allma.http_max_per_host)" ""
  http_runs f-default bench_llm_run "(f) 2,000 x LLM_INVOCATION, mock 500 ms, default HTTP limits" ""
  set_guc allma.http_max_in_flight 2000
  set_guc allma.http_max_per_host 2000
  http_runs e-2000 bench_api_run "(e) 2,000 x API_CALL, mock 500 ms, allma.http_max_in_flight = allma.http_max_per_host = 2000" ">= 3,000 steps/s (ceiling 4,000)"
  http_runs f-2000 bench_llm_run "(f) 2,000 x LLM_INVOCATION, mock 500 ms, allma.http_max_in_flight = allma.http_max_per_host = 2000" ""
  set_guc allma.http_max_in_flight DEFAULT
  set_guc allma.http_max_per_host DEFAULT
}
