-- wrk script: POST a realistic application (the body file is written by bench/run.py)
-- and print the figures as one JSON line at the end.
local body_file = os.getenv("BENCH_BODY")
local f = assert(io.open(body_file, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("id", #threads)
end

function init(args)
   statuses = {}
   counter = 0
end

-- Each request comes from another client address (X-Forwarded-For; intake trusts the
-- loopback proxy in the benchmark), as a public site's traffic does.
function request()
   counter = counter + 1
   local address = string.format("10.%d.%d.%d", id % 256, math.floor(counter / 256) % 256, counter % 256)
   return wrk.format(nil, nil, {
      ["Content-Type"] = "application/json", ["User-Agent"] = "bench/wrk", ["X-Forwarded-For"] = address,
   }, nil)
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local total = {}
   for _, thread in ipairs(threads) do
      for code, n in pairs(thread:get("statuses")) do total[code] = (total[code] or 0) + n end
   end
   local accepted = total[202] or 0
   local codes = {}
   for code, n in pairs(total) do table.insert(codes, string.format('"%d": %d', code, n)) end
   io.write(string.format(
      'BENCH_JSON {"requests": %d, "accepted": %d, "duration_us": %d, "socket_errors": %d, ' ..
      '"p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f, "statuses": {%s}}\n',
      summary.requests, accepted, summary.duration,
      summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
      latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
      latency.max / 1000, table.concat(codes, ", ")))
end
