-- wrk script: Google Pub/Sub push deliveries (wrapped JSON envelope) for POST /pubsub.
--
--   wrk -t2 -c64 -d10s --latency -s bench/pubsub.lua http://127.0.0.1:PORT/pubsub
--
-- Environment (read in every wrk Lua state, so no `--` arguments are needed):
--   PAYLOAD_BYTES  size of message.data before base64 (default 1024 → body ≈ 1.6 KiB)
--   BENCH_RUN_TAG  prefix of every messageId, so ids stay unique across runs (default: time)
--
-- Each request is
--   {"message":{"attributes":{...},"data":"<base64>","messageId":"<tag>-<thread>-<n>",
--    "message_id":…,"publishTime":"…Z","publish_time":…},"subscription":"projects/…"}
-- with a unique messageId (run tag + wrk thread id + per-thread counter). The payloads are JSON
-- text padded with pseudo-random characters; each thread rotates through a pool of distinct
-- payloads so gzip cannot collapse identical bodies (the pool spans more than gzip's 32 KiB
-- window). No x-goog-pubsub-* headers are sent, so a `delivery: auto` route sees a wrapped push.

local payload_bytes = tonumber(os.getenv("PAYLOAD_BYTES") or "") or 1024
local run_tag = os.getenv("BENCH_RUN_TAG")
if run_tag == nil or run_tag == "" then run_tag = tostring(os.time()) end

local POOL_SIZE = 64
local SUBSCRIPTION = "projects/persistor-bench/subscriptions/bench-push"
local HEADERS = {
  ["Content-Type"] = "application/json",
  ["User-Agent"] = "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)",
}

-- The payload helpers live next to this script.
local payload = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "payload.lua")

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

-- Standard base64 with padding. Only used while building the pool, so speed does not matter.
local function base64(s)
  local out, n = {}, #s
  for i = 1, n, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1 = math.floor(v / 262144) % 64
    local c2 = math.floor(v / 4096) % 64
    local c3 = math.floor(v / 64) % 64
    local c4 = v % 64
    out[#out + 1] = B64:sub(c1 + 1, c1 + 1) .. B64:sub(c2 + 1, c2 + 1)
      .. (b and B64:sub(c3 + 1, c3 + 1) or "=")
      .. (c and B64:sub(c4 + 1, c4 + 1) or "=")
  end
  return table.concat(out)
end

local function envelope(data, id, thread_id)
  local stamp = payload.timestamp()
  return string.format(
    '{"message":{"attributes":{"generator":"wrk","thread":"%d"},"data":"%s",'
      .. '"messageId":"%s","message_id":"%s","publishTime":"%s","publish_time":"%s"},'
      .. '"subscription":"%s"}',
    thread_id, data, id, id, stamp, stamp, SUBSCRIPTION)
end

setup = payload.setup

-- Thread state.
local pool, counter, thread_id = {}, 0, 0

function init(args)
  thread_id = tonumber(tid) or 0
  math.randomseed(1000003 * (thread_id + 1) + os.time())
  for k = 1, POOL_SIZE do
    pool[k] = base64(payload.json(payload_bytes, k))
  end
  body_bytes = #envelope(pool[1], run_tag .. "-" .. thread_id .. "-0", thread_id)
end

function request()
  counter = counter + 1
  local id = run_tag .. "-" .. thread_id .. "-" .. counter
  local body = envelope(pool[(counter % POOL_SIZE) + 1], id, thread_id)
  return wrk.format("POST", nil, HEADERS, body)
end

-- Main state again: one line for run.sh (and humans) with the request body size.
function done(summary, latency, requests)
  io.write(string.format("pubsub.lua: payload_bytes=%d body_bytes=%d\n", payload_bytes, payload.body_bytes()))
end
