-- wrk script: Azure Event Grid deliveries (Event Grid schema, a batch of EVENTS events) for POST /eventgrid.
--
--   wrk -t2 -c64 -d10s --latency -s bench/eventgrid.lua http://127.0.0.1:PORT/eventgrid
--
-- Environment (read in every wrk Lua state):
--   PAYLOAD_BYTES  size of each event's `data` object as JSON text (default 1024)
--   EVENTS         events per delivery (default 10, Event Grid's default maxEventsPerBatch is 1)
--   BENCH_RUN_TAG  prefix of every event id, so ids stay unique across runs (default: time)
--
-- Each request is `aeg-event-type: Notification` with a JSON array of EVENTS events, each with a
-- unique id (run tag + wrk thread id + per-thread counter + index) and a `data` object padded
-- with pseudo-random characters from a per-thread pool that spans more than gzip's 32 KiB window.

local payload_bytes = tonumber(os.getenv("PAYLOAD_BYTES") or "") or 1024
local events = tonumber(os.getenv("EVENTS") or "") or 10
local run_tag = os.getenv("BENCH_RUN_TAG")
if run_tag == nil or run_tag == "" then run_tag = tostring(os.time()) end

local POOL_SIZE = 64
local TOPIC = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/bench"
  .. "/providers/Microsoft.EventGrid/topics/persistor-bench"
-- The payload helpers live next to this script.
local payload = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "payload.lua")

local HEADERS = {
  ["Content-Type"] = "application/json",
  ["aeg-event-type"] = "Notification",
  ["aeg-subscription-name"] = "BENCH",
}

setup = payload.setup

local pool, counter, thread_id = {}, 0, 0

local function batch()
  counter = counter + 1
  local stamp = payload.timestamp()
  local parts = {}
  for i = 1, events do
    local id = run_tag .. "-" .. thread_id .. "-" .. counter .. "-" .. i
    parts[i] = string.format(
      '{"id":"%s","topic":"%s","subject":"/bench/%d","eventType":"Persistor.Bench",'
        .. '"eventTime":"%s","data":%s,"dataVersion":"1.0","metadataVersion":"1"}',
      id, TOPIC, i, stamp, pool[((counter * events + i) % POOL_SIZE) + 1])
  end
  return "[" .. table.concat(parts, ",") .. "]"
end

function init(args)
  thread_id = tonumber(tid) or 0
  math.randomseed(2000003 * (thread_id + 1) + os.time())
  for k = 1, POOL_SIZE do
    pool[k] = payload.json(payload_bytes, k)
  end
  body_bytes = #batch()
  counter = 0
end

function request()
  return wrk.format("POST", nil, HEADERS, batch())
end

function done(summary, latency, requests)
  io.write(string.format("eventgrid.lua: events=%d payload_bytes=%d body_bytes=%d\n", events, payload_bytes,
    payload.body_bytes()))
end
