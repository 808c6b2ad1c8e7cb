-- Starts a run, as `kubectl syncseq run` does: any new value of syncseq.dev/requestedAt.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["syncseq.dev/requestedAt"] = "argocd-" .. tostring(os.time())
return obj
