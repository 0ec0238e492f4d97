-- wrk script: POST the JSON body in $BENCH_BODY to the URL; verifies nothing (the harness checks
-- one response for correctness before loading). Prints a machine-readable summary at the end.
-- With BENCH_UNIQUE_IDS=1 each request's executionId gets a "-<n>" suffix of its own (the
-- platform never sends one id twice but to retry, and the SDK replays a repeated id).
-- BENCH_HEADER_0, BENCH_HEADER_1, ... ("Name: value") are added to every request.
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
for n = 0, 9 do
  local header = os.getenv("BENCH_HEADER_" .. n)
  if header == nil then break end
  local name, value = header:match("^([^:]+):%s*(.*)$")
  wrk.headers[name] = value
end

if os.getenv("BENCH_UNIQUE_IDS") == "1" then
  local counter = 0
  local template = wrk.body
  request = function()
    counter = counter + 1
    local body = template:gsub('"executionId": "([^"]*)"', '"executionId": "%1-' .. counter .. '"', 1)
    return wrk.format(nil, nil, nil, body)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_JSON {\"requests\":%d,\"duration_us\":%d,\"p50_us\":%d,\"p99_us\":%d," ..
    "\"mean_us\":%.1f,\"status_errors\":%d,\"connect_errors\":%d,\"read_errors\":%d," ..
    "\"write_errors\":%d,\"timeouts\":%d}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, e.status, e.connect, e.read, e.write, e.timeout))
end
