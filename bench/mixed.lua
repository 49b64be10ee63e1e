-- wrk script for bench/soak.py: chat, streamed chat and embeddings in turn.
local token = os.getenv("BENCH_TOKEN")
local chat = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"}]}'
local stream = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"}],"stream":true}'
local embed = '{"model":"text-embedding-3-small","input":"hello world"}'
local json = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}
local sse = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token,
             ["Accept"] = "text/event-stream"}
local n = 0

function request()
  n = n + 1
  local k = n % 3
  if k == 0 then return wrk.format("POST", "/v1/chat/completions", json, chat) end
  if k == 1 then return wrk.format("POST", "/v1/chat/completions", sse, stream) end
  return wrk.format("POST", "/v1/embeddings", json, embed)
end

function done(summary, latency, requests)
  io.write(string.format("BENCH_NON2XX %d\n", summary.errors.status))
  io.write(string.format("BENCH_REQUESTS %d\n", summary.requests))
end
