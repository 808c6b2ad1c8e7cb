// Tests actions/*.lua the way Argo CD runs resource actions (util/lua/lua.go,
// ExecuteResourceAction and ExecuteResourceActionDiscovery): the health check's sandbox (package,
// base and table libraries, a 1 s limit) plus Argo CD's "safe" os module, preloaded for
// `require("os")`. Argo CD's has os.time and os.date; the scripts use os.time only, which is
// all this harness offers, so a script that reached for anything else would fail here.
package argocd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

var actionNames = []string{"run", "cancel", "suspend", "resume"}

func actionScript(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("actions", name+".lua"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var safeOs = map[string]lua.LGFunction{
	"time": func(L *lua.LState) int {
		L.Push(lua.LNumber(time.Now().Unix()))
		return 1
	},
}

// runAction executes an action or discovery script against obj and returns what it returned,
// as Go values.
func runAction(t *testing.T, src string, obj map[string]interface{}) interface{} {
	t.Helper()
	L, cancel, err := sandbox(library{lua.OsLibName, func(L *lua.LState) int {
		L.Push(L.RegisterModule(lua.OsLibName, safeOs))
		return 1
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer L.Close()
	defer cancel()
	L.PreloadModule(lua.OsLibName, func(L *lua.LState) int {
		L.Push(L.SetFuncs(L.NewTable(), safeOs))
		return 1
	})
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(src); err != nil {
		t.Fatal(err)
	}
	return fromLua(L.Get(-1))
}

// fromLua converts a returned value back, as Argo CD does through JSON.
func fromLua(v lua.LValue) interface{} {
	switch v := v.(type) {
	case lua.LBool:
		return bool(v)
	case lua.LNumber:
		return float64(v)
	case lua.LString:
		return string(v)
	case *lua.LTable:
		if v.MaxN() > 0 {
			var out []interface{}
			v.ForEach(func(_, item lua.LValue) { out = append(out, fromLua(item)) })
			return out
		}
		out := map[string]interface{}{}
		v.ForEach(func(k, item lua.LValue) { out[k.String()] = fromLua(item) })
		return out
	}
	return nil
}

// normal is obj as JSON would carry it (numbers as float64), for comparisons.
func normal(t *testing.T, obj interface{}) map[string]interface{} {
	t.Helper()
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]interface{}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// Which actions each captured state offers.
func TestActionDiscovery(t *testing.T) {
	for _, tc := range []struct {
		fixture string
		edit    func(obj map[string]interface{})
		enabled []string
	}{
		{"running.json", nil, []string{"run", "cancel", "suspend"}},
		{"succeeded.json", nil, []string{"run", "suspend"}},
		{"failed.json", nil, []string{"run", "suspend"}},
		// Failed runs in a row stopped the schedule: resume restarts it.
		{"failed.json", withCondition("ScheduleStopped", "True"), []string{"run", "suspend", "resume"}},
		{"failed.json", withCondition("ScheduleStopped", "False"), []string{"run", "suspend"}},
		{"suspended.json", nil, []string{"run", "resume"}},
		// A Sync running as a sequence's step: cancelling is the sequence's.
		{"sync-running.json", nil, []string{"run", "suspend"}},
		{"sync-succeeded.json", nil, []string{"run", "suspend"}},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			obj := load(t, tc.fixture).Object
			if tc.edit != nil {
				tc.edit(obj)
			}
			got, ok := runAction(t, actionScript(t, "discovery"), obj).(map[string]interface{})
			if !ok {
				t.Fatalf("discovery returned %v, want a table of actions", got)
			}
			want := map[string]bool{}
			for _, a := range tc.enabled {
				want[a] = true
			}
			for _, name := range actionNames {
				action, ok := got[name].(map[string]interface{})
				if !ok {
					t.Errorf("action %s missing: %v", name, got)
					continue
				}
				if disabled := action["disabled"] == true; disabled == want[name] {
					t.Errorf("action %s: disabled = %v, want %v", name, disabled, !want[name])
				}
			}
			if len(got) != len(actionNames) {
				t.Errorf("actions %v, want exactly %v", got, actionNames)
			}
		})
	}
}

// Each action changes what it says and nothing else.
func TestActionsChangeOnlyTheirField(t *testing.T) {
	stamp := regexp.MustCompile(`^argocd-[0-9]{10}$`)
	for _, tc := range []struct {
		action, fixture string
		check           func(t *testing.T, before, after map[string]interface{})
	}{
		{"run", "succeeded.json", annotated("syncseq.dev/requestedAt", stamp)},
		// A Sync without annotations gets its first one.
		{"run", "sync-succeeded.json", annotated("syncseq.dev/requestedAt", stamp)},
		{"cancel", "running.json", annotated("syncseq.dev/cancelRequestedAt", stamp)},
		{"suspend", "succeeded.json", suspend(true)},
		{"resume", "suspended.json", both(suspend(false), annotated("syncseq.dev/resumeScheduleRequestedAt", stamp))},
	} {
		t.Run(tc.action+"/"+tc.fixture, func(t *testing.T) {
			obj := load(t, tc.fixture).Object
			before := normal(t, obj)
			after := normal(t, runAction(t, actionScript(t, tc.action), obj))
			tc.check(t, before, after)
			if !reflect.DeepEqual(before, after) {
				t.Errorf("%s changed more than its field", tc.action)
			}
		})
	}
}

// annotated checks that the action set annotation key to a value matching stamp, then removes
// it from after (and from before, with an annotations map emptied back to what it was).
func annotated(key string, stamp *regexp.Regexp) func(t *testing.T, before, after map[string]interface{}) {
	return func(t *testing.T, before, after map[string]interface{}) {
		meta := after["metadata"].(map[string]interface{})
		annotations, _ := meta["annotations"].(map[string]interface{})
		value, _ := annotations[key].(string)
		if !stamp.MatchString(value) {
			t.Fatalf("%s = %q, want a new value like argocd-<unix seconds>", key, value)
		}
		old, _ := before["metadata"].(map[string]interface{})["annotations"].(map[string]interface{})
		if old[key] == value {
			t.Errorf("%s kept its value %q: no new run or cancel would be asked for", key, value)
		}
		delete(annotations, key)
		if prev, had := old[key]; had {
			annotations[key] = prev
		}
		if len(annotations) == 0 && old == nil {
			delete(meta, "annotations")
		}
	}
}

// withCondition adds a condition of type and status to a captured object's status.
func withCondition(kind, status string) func(obj map[string]interface{}) {
	return func(obj map[string]interface{}) {
		st := obj["status"].(map[string]interface{})
		conditions, _ := st["conditions"].([]interface{})
		st["conditions"] = append(conditions, map[string]interface{}{
			"type": kind, "status": status, "reason": "ConsecutiveFailures", "message": "",
		})
	}
}

// both runs each check in turn.
func both(checks ...func(t *testing.T, before, after map[string]interface{})) func(t *testing.T, before, after map[string]interface{}) {
	return func(t *testing.T, before, after map[string]interface{}) {
		for _, check := range checks {
			check(t, before, after)
		}
	}
}

func suspend(want bool) func(t *testing.T, before, after map[string]interface{}) {
	return func(t *testing.T, before, after map[string]interface{}) {
		spec := after["spec"].(map[string]interface{})
		if spec["suspend"] != want {
			t.Fatalf("spec.suspend = %v, want %v", spec["suspend"], want)
		}
		spec["suspend"] = before["spec"].(map[string]interface{})["suspend"]
	}
}

// The ConfigMap patch holds exactly the scripts, for both kinds.
func TestActionsConfigMapPatchMatchesTheScripts(t *testing.T) {
	b, err := os.ReadFile("argocd-cm-patch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct{ Data map[string]string }
	if err := yaml.Unmarshal(b, &cm); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"SyncSequence", "Sync"} {
		key := "resource.customizations.actions.syncseq.dev_" + kind
		var actions struct {
			Discovery   string `json:"discovery.lua"`
			Definitions []struct {
				Name   string
				Action string `json:"action.lua"`
			}
		}
		if err := yaml.Unmarshal([]byte(cm.Data[key]), &actions); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if actions.Discovery != actionScript(t, "discovery") {
			t.Errorf("%s discovery.lua differs from actions/discovery.lua: run gitops/argocd/render-cm-patch.sh", key)
		}
		if len(actions.Definitions) != len(actionNames) {
			t.Fatalf("%s: %d definitions, want %v", key, len(actions.Definitions), actionNames)
		}
		for i, name := range actionNames {
			d := actions.Definitions[i]
			if d.Name != name || d.Action != actionScript(t, name) {
				t.Errorf("%s definition %d (%s) differs from actions/%s.lua: run gitops/argocd/render-cm-patch.sh", key, i, d.Name, name)
			}
		}
	}
}
