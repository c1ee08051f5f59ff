-- wrk script: POST one location report per request, spread over 10,000 users.
local ts = os.date("!%Y-%m-%dT%H:%M:%SZ")
local counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  counter = counter + 1
  local user = counter % 10000
  local body = string.format(
    '{"device_id":"d-%d","user_id":"u-%d","lat":%.5f,"lon":%.5f,"accuracy_m":20,"ts":"%s"}',
    user, user, 48.85 + (counter % 100) / 1000, 2.35 + (counter % 77) / 1000, ts)
  return wrk.format(nil, "/v1/locations", nil, body)
end
