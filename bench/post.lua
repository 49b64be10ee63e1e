-- wrk script: POST a fixed JSON body with the bench's headers (from the environment).
wrk.method = "POST"
local f = assert(io.open(os.getenv("BENCH_BODY"), "r"))
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
local accept = os.getenv("BENCH_ACCEPT")
if accept and accept ~= "" then wrk.headers["Accept"] = accept end

-- Report non-2xx answers, so a run full of errors cannot pass for a fast one.
function done(summary, latency, requests)
  io.write(string.format("BENCH_NON2XX %d\n", summary.errors.status))
end
