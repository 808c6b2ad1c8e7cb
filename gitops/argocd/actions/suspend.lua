-- No new scheduled or upstream-started runs, as `kubectl syncseq suspend` does.
obj.spec.suspend = true
return obj
