-- Argo CD resource actions for syncseq.dev/v1alpha1 SyncSequence and Sync: which are offered.
-- run and suspend always make sense; resume while suspended or while failed runs in a row
-- stopped the schedule (ScheduleStopped=True); cancel only while a run of the object's own is
-- in progress (a Sync running as a sequence's step is cancelled through that sequence).
local actions = {}
local running = obj.status ~= nil and obj.status.currentRun ~= nil
local suspended = obj.spec ~= nil and obj.spec.suspend == true
local stopped = false
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "ScheduleStopped" and c.status == "True" then
      stopped = true
    end
  end
end
actions["run"] = {["disabled"] = false}
actions["cancel"] = {["disabled"] = not running}
actions["suspend"] = {["disabled"] = suspended}
actions["resume"] = {["disabled"] = not (suspended or stopped)}
return actions
