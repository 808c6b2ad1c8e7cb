-- Argo CD resource actions for syncseq.dev/v1alpha1 SyncSequence and Sync: which are offered.
-- run and suspend/resume always make sense; cancel only while a run of the object's own is in
-- progress (a Sync running as a sequence's step is cancelled through that sequence).
local actions = {}
local running = obj.status ~= nil and obj.status.currentRun ~= nil
local suspended = obj.spec ~= nil and obj.spec.suspend == true
actions["run"] = {["disabled"] = false}
actions["cancel"] = {["disabled"] = not running}
actions["suspend"] = {["disabled"] = suspended}
actions["resume"] = {["disabled"] = not suspended}
return actions
