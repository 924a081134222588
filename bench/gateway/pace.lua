-- wrk script: POST the iris request at a fixed rate per connection (FERRY_BENCH_RATE, default 100/s), and
-- at the end write every recorded latency (microseconds) with its count to FERRY_BENCH_OUT, so run.py can
-- merge several rounds exactly. FERRY_BENCH_RATE=0: no pacing, each connection sends as fast as answers come.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } ferry_timespec;
int clock_gettime(int clk_id, ferry_timespec *tp);
]]
local now_buffer = ffi.new("ferry_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, now_buffer) -- CLOCK_MONOTONIC
  return tonumber(now_buffer.tv_sec) * 1000 + tonumber(now_buffer.tv_nsec) / 1e6
end

local rate = tonumber(os.getenv("FERRY_BENCH_RATE") or "100")
local interval = rate > 0 and 1000 / rate or 0
local due = nil

wrk.method = "POST"
wrk.body = '{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = os.getenv("FERRY_BENCH_TOKEN") or ""

-- The time left until this request's slot: a slow answer is followed at once, not pushed back. Defined only
-- when pacing (wrk then sends every request through its timer; with no delay() it sends back to back).
if interval > 0 then
  function delay()
    local now = now_ms()
    if due == nil then due = now end
    local wait = due - now
    due = due + interval
    if wait < 0 then return 0 end
    return math.floor(wait)
  end
end

function done(summary, latency, requests)
  local path = os.getenv("FERRY_BENCH_OUT")
  if not path then return end
  local out = io.open(path, "w")
  out:write(string.format("requests %d\nduration_us %d\nerrors %d\n", summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status +
    summary.errors.timeout))
  local i = 1
  while true do
    local value, count = latency(i) -- the i-th distinct value, ascending; past the last: 0 (not nil)
    if value == nil or value == 0 then break end
    out:write(string.format("%d %d\n", value, count))
    i = i + 1
  end
  out:close()
end
