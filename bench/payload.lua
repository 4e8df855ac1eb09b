-- Shared by the wrk scripts (loaded with dofile from the script's own directory): the benchmark
-- payload, a cached RFC 3339 timestamp, and the numbering of wrk threads.
local M = {}

local ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"

function M.random_text(len)
  local t = {}
  for i = 1, len do
    local k = math.random(1, #ALNUM)
    t[i] = ALNUM:sub(k, k)
  end
  return table.concat(t)
end

-- PAYLOAD=random (default): a JSON document padded with pseudo-random letters and digits, hard
-- work for gzip. PAYLOAD=events: an order event like a pipeline carries (field names repeat,
-- values come from small vocabularies and random numbers), which compresses like real JSON.
local kind = os.getenv("PAYLOAD") or "random"
if kind ~= "random" and kind ~= "events" then error("PAYLOAD must be random or events, not " .. kind) end

local function padded(len, k)
  local head = string.format('{"kind":"bench","n":%d,"pad":"', k)
  local tail = '"}'
  local pad = len - #head - #tail
  if pad < 0 then return M.random_text(len) end
  return head .. M.random_text(pad) .. tail
end

local COUNTRIES = { "DE", "FR", "US", "GB", "NL", "SE", "PL", "ES", "IT", "JP" }
local TIERS = { "bronze", "silver", "gold", "platinum" }
local STATUS = { "created", "paid", "packed", "shipped", "delivered", "returned" }
local CHANNELS = { "web", "ios", "android", "store", "partner-api" }

local function pick(list) return list[math.random(1, #list)] end

local function order_event(len, k)
  local head = string.format(
    '{"type":"order.%s","orderId":"ord-%08d","customer":{"id":"c-%06d","tier":"%s","country":"%s"},'
      .. '"channel":"%s","createdAt":"2026-11-%02dT%02d:%02d:%02d.%03dZ","currency":"EUR","items":[',
    pick(STATUS), math.random(0, 99999999), math.random(0, 999999), pick(TIERS), pick(COUNTRIES),
    pick(CHANNELS), math.random(1, 28), math.random(0, 23), math.random(0, 59), math.random(0, 59),
    math.random(0, 999))
  local items, total, n = {}, 0, 0
  local tail_len = #string.format('],"total":%.2f,"n":%d}', 99999.99, k)
  local size = #head + tail_len
  while true do
    local price = math.random(100, 99999) / 100
    local item = string.format('{"sku":"SKU-%05d","qty":%d,"price":%.2f,"warehouse":"%s-%d"}',
      math.random(0, 99999), math.random(1, 5), price, pick(COUNTRIES), math.random(1, 9))
    local sep = n > 0 and 1 or 0
    if size + sep + #item > len then break end
    items[#items + 1] = (sep == 1 and "," or "") .. item
    size = size + sep + #item
    total = total + price
    n = n + 1
  end
  return head .. table.concat(items) .. string.format('],"total":%.2f,"n":%d}', total, k)
end

-- A JSON document of about `len` bytes (exactly, for PAYLOAD=random).
function M.json(len, k)
  if kind == "events" then return order_event(len, k) end
  return padded(len, k)
end

-- The current time in RFC 3339 (UTC), recomputed at most once a second.
local cached_second, cached_stamp = -1, ""
function M.timestamp()
  local now = os.time()
  if now ~= cached_second then
    cached_second = now
    cached_stamp = os.date("!%Y-%m-%dT%H:%M:%S.000Z", now)
  end
  return cached_stamp
end

-- wrk's setup(), run in the main state: number the threads (`tid` becomes a global in each
-- thread's own Lua state) and keep them, so that done() can ask the first for its body size.
M.threads = {}
function M.setup(thread)
  thread:set("tid", #M.threads)
  M.threads[#M.threads + 1] = thread
end

-- The body size the first thread reported (its `body_bytes` global), for done().
function M.body_bytes()
  return M.threads[1] and M.threads[1]:get("body_bytes") or 0
end

return M
