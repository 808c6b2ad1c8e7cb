-- Scheduled and upstream-started runs again, as `kubectl syncseq resume` does.
obj.spec.suspend = false
return obj
