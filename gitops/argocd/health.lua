-- Argo CD health check for syncseq.dev/v1alpha1 SyncSequence and Sync.
--
-- Install it in argocd-cm under resource.customizations.health.syncseq.dev_SyncSequence (and
-- ..._Sync): see argocd-cm-patch.yaml. It uses only the base and table libraries, the ones Argo CD
-- opens for custom checks, so it needs no resource.customizations.useOpenLibs.
--
-- In order, the first match wins:
--   Progressing  the controller has not reported status for the current generation yet
--   Degraded     the spec is stalled (condition Stalled=True: invalid schedule or time zone, ...)
--   Progressing  the controller is still reconciling (Reconciling=True)
--   Progressing  a run is in progress (SyncSequence: status.currentRun.phase Running;
--                Sync: condition Running=True or status.lastRun.outcome Running)
--   Degraded     the last finished run failed (SyncSequence: status.lastRunResult Failed;
--                Sync: status.lastRun.outcome Failed), even when suspended
--   Progressing  not ready yet (Ready=False, e.g. a referenced Sync does not exist yet)
--   Suspended    spec.suspend is true and nothing runs
--   Healthy      otherwise (no run yet, or the last run Succeeded, SucceededWithErrors or Cancelled)

local hs = {}

local function done(status, message)
  hs.status = status
  hs.message = message
  return hs
end

local function condition(status, ctype)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

-- "Reason: message", or whichever of the two is set.
local function describe(c)
  local reason = c.reason or ""
  local message = c.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if message ~= "" then
    return message
  end
  return reason
end

local kind = obj.kind or "SyncSequence"
local spec = obj.spec or {}
local status = obj.status
local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end

-- 1. Has the controller seen the current spec?
if status == nil or status.observedGeneration == nil then
  return done("Progressing", "Waiting for the syncseq controller to report the status of this " .. kind)
end
if generation ~= nil and status.observedGeneration < generation then
  return done("Progressing", "Waiting for the syncseq controller to observe generation " .. generation ..
    " (status reflects generation " .. status.observedGeneration .. ")")
end

-- 2. A spec the controller cannot act on: no run will ever start until it is fixed.
local stalled = condition(status, "Stalled")
if is_true(stalled) then
  return done("Degraded", "Stalled: " .. describe(stalled))
end
local reconciling = condition(status, "Reconciling")
if is_true(reconciling) then
  return done("Progressing", "Reconciling: " .. describe(reconciling))
end

local suspended = spec.suspend == true
local suspended_note = ""
if suspended then
  suspended_note = " (new scheduled runs are suspended)"
end

if kind == "Sync" then
  -- 3./4. A Sync: its last run, whoever triggered it (own schedule, manual request, a sequence).
  local last = status.lastRun
  local running = condition(status, "Running")
  if is_true(running) and running.message ~= nil and running.message ~= "" then
    return done("Progressing", "Sync is " .. running.message)
  end
  if last ~= nil and last.outcome == "Running" then
    local msg = "Sync job " .. (last.jobName or "?") .. " is running"
    if last.sequenceRun ~= nil then
      msg = msg .. " for sequence run " .. last.sequenceRun
    end
    return done("Progressing", msg)
  end
  if last ~= nil and last.outcome == "Failed" then
    local msg = "Last run failed (job " .. (last.jobName or "?") .. ")"
    if last.message ~= nil and last.message ~= "" then
      msg = msg .. ": " .. last.message
    end
    return done("Degraded", msg .. suspended_note)
  end
else
  -- 3. A SyncSequence run in progress. The Running condition says which step and what it waits for.
  local run = status.currentRun
  if run ~= nil and run.phase == "Running" then
    local running = condition(status, "Running")
    if is_true(running) and running.message ~= nil and running.message ~= "" then
      return done("Progressing", "Run in progress: " .. running.message)
    end
    return done("Progressing", "Run " .. (run.id or "?") .. " in progress, step " .. (run.progress or "?"))
  end

  -- 4. The last finished run failed. LastRunSucceeded carries the failing step and its error.
  if status.lastRunResult == "Failed" then
    local lrs = condition(status, "LastRunSucceeded")
    local msg = "Last run failed"
    if lrs ~= nil and lrs.message ~= nil and lrs.message ~= "" then
      msg = "Last run failed: " .. lrs.message
    end
    return done("Degraded", msg .. suspended_note)
  end
end

-- 5. Not ready, but not stalled either: waiting for something (a Sync that does not exist yet).
local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "False" then
  return done("Progressing", "Not ready: " .. describe(ready))
end

-- 6. Suspended and nothing runs.
if suspended then
  return done("Suspended", kind .. " is suspended: no new scheduled runs (a syncseq.dev/requestedAt request still starts one)")
end

-- 7. Healthy: say how the last run went and when the next one is due.
local msg
if kind == "Sync" then
  local last = status.lastRun
  if last ~= nil and last.outcome ~= nil then
    msg = "Last run " .. last.outcome
    if last.message ~= nil and last.message ~= "" then
      msg = msg .. ": " .. last.message
    end
  else
    msg = "No run yet"
  end
else
  local lrs = condition(status, "LastRunSucceeded")
  if status.lastRunResult ~= nil then
    msg = "Last run " .. status.lastRunResult
    if lrs ~= nil and lrs.message ~= nil and lrs.message ~= "" then
      msg = msg .. " (" .. lrs.message .. ")"
    end
  else
    msg = "No run yet"
  end
end
if status.nextScheduleTime ~= nil then
  msg = msg .. "; next scheduled run at " .. status.nextScheduleTime
end
return done("Healthy", msg)
