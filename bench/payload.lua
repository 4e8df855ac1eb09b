-- Shared by the wrk scripts (loaded with dofile from the script's own directory): the benchmark
-- payload and a cached RFC 3339 timestamp.
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

-- A JSON document of exactly `len` bytes (or plain text when len is too small for the wrapper),
-- padded with pseudo-random characters so gzip cannot collapse it.
function M.json(len, k)
  local head = string.format('{"kind":"bench","n":%d,"pad":"', k)
  local tail = '"}'
  local pad = len - #head - #tail
  if pad < 0 then return M.random_text(len) end
  return head .. M.random_text(pad) .. tail
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

return M
