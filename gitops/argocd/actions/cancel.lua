-- Cancels the run in progress, as `kubectl syncseq cancel` does: any new value of
-- syncseq.dev/cancelRequestedAt.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["syncseq.dev/cancelRequestedAt"] = "argocd-" .. tostring(os.time())
return obj
