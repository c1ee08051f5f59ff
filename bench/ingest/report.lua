-- wrk script: POST one location report per request, spread over the devices
-- whose tokens bench/ingest/run minted ("device user token" lines in the
-- file $BENCH_TOKENS), each with its own Authorization header. BATCH=N (env)
-- posts an array of N reports of one device per request instead. BRIDGE=1
-- (env) posts to the generic bridge what homing puts on Kafka: the record's
-- value (received_at included) as the body, its key (the user) in a
-- Kafka-Key header, no token.
local ts = os.date("!%Y-%m-%dT%H:%M:%SZ")
-- As homing writes them in a record: milliseconds, UTC.
local ts_ms = os.date("!%Y-%m-%dT%H:%M:%S.000Z")
local received = os.date("!%Y-%m-%dT%H:%M:%S.123Z")
local counter = 0
local batch = tonumber(os.getenv("BATCH") or "1")
local bridge = os.getenv("BRIDGE") == "1"
local devices = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do
  local device, user, token = line:match("^(%S+) (%S+) (%S+)$")
  if token then devices[#devices + 1] = { device, user, "Bearer " .. token } end
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  counter = counter + 1
  local d = devices[counter % #devices + 1]
  if bridge then
    local k = counter + 1 -- the report homing gets at this count
    local body = string.format(
      '{"device_id":"%s","user_id":"%s","lat":%.5f,"lon":%.5f,"accuracy_m":20,"ts":"%s",' ..
      '"received_at":"%s"}', d[1], d[2], 48.85 + (k % 100) / 1000, 2.35 + (k % 77) / 1000,
      ts_ms, received)
    return wrk.format(nil, "/v1/locations",
                      { ["Content-Type"] = "application/json", ["Kafka-Key"] = d[2] }, body)
  end
  local reports = {}
  for i = 1, batch do
    local k = counter * batch + i
    reports[i] = string.format(
      '{"device_id":"%s","user_id":"%s","lat":%.5f,"lon":%.5f,"accuracy_m":20,"ts":"%s"}',
      d[1], d[2], 48.85 + (k % 100) / 1000, 2.35 + (k % 77) / 1000, ts)
  end
  local body = batch == 1 and reports[1] or "[" .. table.concat(reports, ",") .. "]"
  -- wrk.format takes these headers instead of wrk.headers: name them all.
  return wrk.format(nil, "/v1/locations",
                    { ["Content-Type"] = "application/json", ["Authorization"] = d[3] }, body)
end
