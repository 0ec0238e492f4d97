-- wrk script: POST the JSON body in $BENCH_BODY to the URL; verifies nothing (the harness checks
-- one response for correctness before loading). Prints a machine-readable summary at the end.
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_JSON {\"requests\":%d,\"duration_us\":%d,\"p50_us\":%d,\"p99_us\":%d," ..
    "\"mean_us\":%.1f,\"status_errors\":%d,\"connect_errors\":%d,\"read_errors\":%d," ..
    "\"write_errors\":%d,\"timeouts\":%d}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, e.status, e.connect, e.read, e.write, e.timeout))
end
