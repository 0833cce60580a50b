-- Shared by every script: scripts.py prepends this file to each of them.
--
-- Replies. Every script answers with one shape, a table {status, ...}:
-- the status is one of the names below (a string, so that redis-cli and
-- MONITOR show it as it is meant), and the fields after it are named in
-- each script's header. scripts.py decodes it (``Reply``) in one place.
local OK = 'ok'                    -- done; for a read: here is the answer
local NOT_CURRENT = 'not_current'  -- the claim token is not current: nothing changed
local HELD = 'held'                -- another live claim holds the flow: nothing changed
local NO_FLOW = 'no_flow'          -- there is no such flow: nothing changed
local FULL = 'full'                -- no room left for it: nothing changed

-- The claim stored at claim_key as a table, or nil when there is none or it
-- is unreadable (not JSON, no string claim_id, no numeric epoch). No token
-- is ever current for an unreadable claim (is_current), so nobody holds it:
-- claims replace it like an expired one instead of waiting on it forever.
local function readable_claim(claim_key)
  local raw = redis.call('GET', claim_key)
  if not raw then return nil end
  local ok, claim = pcall(cjson.decode, raw)
  if ok and type(claim) == 'table' and type(claim.claim_id) == 'string'
      and type(claim.epoch) == 'number' then
    return claim
  end
  return nil
end

-- Does a claim's lease still run? A claim names its holder's lease key
-- (leases.py): one key per replica, whose expiry ends all its claims at
-- once. A claim stored by an older version names none: it has an expiry
-- of its own, so that it exists at all means it runs.
local function lease_runs(claim)
  if type(claim.lease_key) ~= 'string' then return true end
  return redis.call('EXISTS', claim.lease_key) == 1
end

-- The live claim stored at claim_key (readable, and its lease runs), or nil.
local function live_claim(claim_key)
  local claim = readable_claim(claim_key)
  if claim and lease_runs(claim) then return claim end
  return nil
end

-- Is the claim stored at claim_key exactly this token, claim id AND epoch,
-- and does its lease run? The epoch alone is not enough: after a failover
-- lost an INCR, the new primary can hand the same epoch to a second claimer.
local function is_current(claim_key, claim_id, epoch)
  local claim = live_claim(claim_key)
  return claim ~= nil and claim.claim_id == claim_id and claim.epoch == tonumber(epoch)
end

-- The flow's state: '' when the record is missing, '?' when unreadable.
local function flow_state(flow_key)
  local raw = redis.call('GET', flow_key)
  if not raw then return '' end
  local ok, flow = pcall(cjson.decode, raw)
  if ok and type(flow) == 'table' and type(flow.state) == 'string' then
    return flow.state
  end
  return '?'
end
