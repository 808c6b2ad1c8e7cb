-- Scheduled and upstream-started runs again, as `kubectl syncseq resume` does: spec.suspend
-- false, and a new value of syncseq.dev/resumeScheduleRequestedAt, which restarts a schedule
-- that failed runs in a row stopped (stopScheduleAfterFailures; the controller never writes
-- spec).
local os = require("os")
obj.spec.suspend = false
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["syncseq.dev/resumeScheduleRequestedAt"] = "argocd-" .. tostring(os.time())
return obj
