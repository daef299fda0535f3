"""The warmup's Lua script (echoes-ops warmup; see docs/warmup.md), beside scripts.py.

Register once per client (SCRIPT LOAD, EVALSHA); never build Lua text at run time.
"""

from __future__ import annotations

from typing import Final

from echoes_ops.contract.lua_prelude import TYPE_ERRORS_ONLY

# Warm players' session and inventory caches from database rows, never overwriting fresher
# data a live worker wrote. One call carries the players of one step; the caller sizes
# steps from the server time each call reports, so a call stays inside the command budget.
#
# KEYS, by ARGV[8] (the mode):
#   "pairs": KEYS[2i-1] = player i's session key, KEYS[2i] = its inventory key (one server:
#            the keys of a call may live anywhere);
#   "sessions": KEYS[i] = player i's session key (its inventory is handled by another call:
#            on Redis Cluster every call's keys share one slot);
#   "inventories": KEYS[i] = player i's inventory key, written only as the rows say: the
#            caller sends it only for players whose session call returned W or U.
# ARGV[1] = "1" for a dry run (read and judge only), ARGV[2] = smallest plausible epoch,
# ARGV[3] = largest plausible epoch (now + allowed skew), ARGV[4] = session TTL seconds,
# ARGV[5] = inventory TTL seconds, ARGV[6] = "1" to write sessions, ARGV[7] = f, the number
# of session fields the rows carry, ARGV[8] = the mode, ARGV[9] = "1" to measure the call's
# CPU time, ARGV[10 .. 9+f] = the field names;
# then per player (what the mode needs, in this order):
#   the row's last-active time (epoch seconds text) and the f values in the order of the
#   names ("" = the row has no value: the field is left out, or removed from an existing
#   session) -- modes pairs and sessions;
#   m, then m JSON inventory rows (m = -1: leave the inventory alone) -- modes pairs and
#   inventories.
# The existing session decides: absent -> created with the row's fields,
# websocket_connected=false and last_heartbeat=<row time> ("W"); last_heartbeat newer than
# the row -> fresher, left alone ("F"); last_heartbeat not epoch seconds or missing, or the
# key not a hash -> unknown, left alone ("X"); otherwise the row's fields and
# last_heartbeat=<row time> are merged in ("W") unless all already match and the key has a
# TTL ("U"). Written sessions get the session TTL. The inventory is left alone when the
# session is fresher or unknown ("F"/"X"; also "X" when the key is not a list), else
# replaced by the rows (DEL, RPUSH, EXPIRE: "W"), deleted when there are none ("D"), or
# left as is when equal and with a TTL ("U"). When none of the call's keys exists (the
# usual first fill), one EXISTS answers for all and nothing more is read.
# Returns {session codes, inventory codes, CPU microseconds of the call's body (the main
# thread's, from INFO cpu, which costs a few microseconds: only when ARGV[9] asks; else -1)}:
# one code character per player ("-" = not asked; in mode sessions the session's state is
# returned even when sessions are not written, so the caller knows whether its inventory
# may go). CPU time, not wall time: a server the OS stops in the middle of a call would
# otherwise make any call look long, whatever its size.
WARMUP_PLAYERS: Final = (
    TYPE_ERRORS_ONLY
    + """local call, rpcall, unpack, tonumber = redis.call, redis.pcall, unpack, tonumber
local function cpu()
  local info, match = call('INFO', 'cpu'), string.match
  return tonumber(match(info, 'used_cpu_user_main_thread:([%d.]+)')
      or match(info, 'used_cpu_user:([%d.]+)'))
    + tonumber(match(info, 'used_cpu_sys_main_thread:([%d.]+)')
      or match(info, 'used_cpu_sys:([%d.]+)'))
end
local measure = ARGV[9] == '1'
local started = measure and cpu()
local dry = ARGV[1] == '1'
local min_epoch = tonumber(ARGV[2])
local max_epoch = tonumber(ARGV[3])
local session_ttl = ARGV[4]
local inventory_ttl = ARGV[5]
local do_sessions = ARGV[6] == '1'
local f = tonumber(ARGV[7])
local mode = ARGV[8]
local with_session = mode ~= 'inventories'
local with_inventory = mode ~= 'sessions'
local names = {}
for i = 1, f do names[i] = ARGV[9 + i] end
names[f + 1] = 'last_heartbeat'
local row = {}
for i = 1, f do row[2 * i - 1] = names[i] end
row[2 * f + 1] = 'last_heartbeat'
row[2 * f + 3] = 'websocket_connected'
row[2 * f + 4] = 'false'
local p = 10 + f
local none = call('EXISTS', unpack(KEYS)) == 0
local s_out, i_out = {}, {}
local k = 1
local n = #ARGV
while k <= #KEYS do
  local player = #s_out + 1
  local skey, ikey, stamp, first
  if with_session then
    skey = KEYS[k]
    k = k + 1
    stamp = ARGV[p]
    first = p + 1
    p = first + f
  end
  local rows = -1
  local rows_first = p
  if with_inventory then
    ikey = KEYS[k]
    k = k + 1
    rows = tonumber(ARGV[p])
    rows_first = p + 1
    if rows and rows > 0 then p = rows_first + rows else p = rows_first end
  end
  if not rows or p - 1 > n then
    return redis.error_reply('ERR warmup: malformed arguments for player ' .. player)
  end

  -- the existing session: absent (A), fresher (F), unknown (X), same time (S), older (O);
  -- an inventories call comes after the session's own call said it may be written (A)
  local state, current, ttl = 'A', nil, -2
  if with_session and not none then
    ttl = call('TTL', skey)
    if ttl ~= -2 then
      current = wrongtype_only(rpcall('HMGET', skey, unpack(names)))
      local t = current.err == nil and tonumber(current[f + 1])
      if not t or t ~= t or t < min_epoch or t > max_epoch then
        state = 'X'
      else
        local row_ts = tonumber(stamp)
        if t > row_ts then state = 'F' elseif t == row_ts then state = 'S' else state = 'O' end
      end
    end
  end

  local s = '-'
  if with_session then
    if state == 'F' or state == 'X' then
      s = state
    elseif not do_sessions then
      s = mode == 'sessions' and 'U' or '-'
    else
      local changed = state ~= 'S' or ttl < 0
      if not changed then
        for i = 1, f do
          local want, have = ARGV[first + i - 1], current[i]
          if want == '' then
            if have then changed = true break end
          elseif have ~= want then
            changed = true break
          end
        end
      end
      if changed then
        if not dry then
          -- the usual row has every value: its pairs go out of one table made once per
          -- call (names in place), only the values set; else pairs of what it has
          local m, full = 2 * f, true
          for i = 1, f do
            local value = ARGV[first + i - 1]
            if value == '' then full = false break end
            row[2 * i] = value
          end
          if full then
            row[m + 2] = stamp
            -- websocket_connected only on a new session
            call('HSET', skey, unpack(row, 1, state == 'A' and m + 4 or m + 2))
          else
            local set, gone = {}, {}
            m = 0
            for i = 1, f do
              local value = ARGV[first + i - 1]
              if value == '' then
                gone[#gone + 1] = names[i]
              else
                set[m + 1] = names[i]
                set[m + 2] = value
                m = m + 2
              end
            end
            set[m + 1] = 'last_heartbeat'
            set[m + 2] = stamp
            if state == 'A' then
              set[m + 3] = 'websocket_connected'
              set[m + 4] = 'false'
            elseif #gone > 0 then
              call('HDEL', skey, unpack(gone))
            end
            call('HSET', skey, unpack(set))
          end
          call('EXPIRE', skey, session_ttl)
        end
        s = 'W'
      else
        s = 'U'
      end
    end
  end

  local inv = '-'
  if rows >= 0 then
    if state == 'F' or state == 'X' then
      inv = state
    else
      -- the list as it is (none: absent, known without reading it)
      local len, same = 0, rows == 0
      if not none then
        local items = wrongtype_only(rpcall('LRANGE', ikey, 0, -1))
        if items.err then
          inv = 'X'
        else
          len = #items
          same = len == rows
          if same and rows > 0 then
            for j = 1, rows do
              if items[j] ~= ARGV[rows_first + j - 1] then same = false break end
            end
            same = same and call('TTL', ikey) >= 0
          end
        end
      end
      if inv == 'X' then
        -- not a list: left alone
      elseif same then
        inv = 'U'
      elseif rows == 0 then
        if not dry then call('DEL', ikey) end
        inv = 'D'
      else
        if not dry then
          if len > 0 then call('DEL', ikey) end
          local stop = rows_first + rows - 1
          for j = rows_first, stop, 1000 do
            call('RPUSH', ikey, unpack(ARGV, j, math.min(j + 999, stop)))
          end
          call('EXPIRE', ikey, inventory_ttl)
        end
        inv = 'W'
      end
    end
  end
  s_out[player] = s
  i_out[player] = inv
end
if p ~= n + 1 then
  return redis.error_reply('ERR warmup: malformed arguments (trailing values)')
end
local spent = -1
if measure then spent = math.floor((cpu() - started) * 1000000 + 0.5) end
return {table.concat(s_out), table.concat(i_out), spent}
"""
)
