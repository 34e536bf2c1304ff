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
