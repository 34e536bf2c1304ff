-- wrk load script: POST one SST-2 dev sentence per request, cycling through the file.
-- Usage (apt-get install wrk; servers started as in BENCHMARKS.md, section Serving):
--   GRAFT_DATA=../shared/data wrk -t1 -c64 -d15s --latency -s benchmarks/serve_wrk.lua http://127.0.0.1:PORT/v1/models/bench/predict
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local texts = {}
for line in io.lines((os.getenv("GRAFT_DATA") or "../shared/data") .. "/sst2/dev.tsv") do
  local s = line:match("^%d\t(.*)$")
  if s then table.insert(texts, (s:gsub('\\', '\\\\'):gsub('"', '\\"'))) end
end
local i = 0
request = function()
  i = i % #texts + 1
  return wrk.format(nil, nil, nil, '{"inputs": ["' .. texts[i] .. '"]}')
end

-- one machine-readable line for benchmarks/serve_load.py (--load wrk): requests, seconds,
-- p50/p95/p99 latency in ms, responses that were not 2xx/3xx, socket errors
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("GRAFT-WRK %d %.3f %.3f %.3f %.3f %d %d\n", summary.requests,
    summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(95) / 1e3,
    latency:percentile(99) / 1e3, e.status, e.connect + e.read + e.write + e.timeout))
end
