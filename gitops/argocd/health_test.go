// Package argocd tests health.lua the way Argo CD runs a custom health check: gopher-lua with
// only the package, base and table libraries open, the live object converted to a global `obj`
// table, a 1 s time limit, and the returned table read as {status, message} with the status
// checked against Argo CD's health codes (util/lua/lua.go, runLua and ExecuteHealthLua).
//
// The fixtures in ../testdata are captured from real controller runs by ../capture-fixtures.sh
// (generation-lagging.json is the one edited by hand; see ../README.md).
package argocd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// Argo CD's valid health codes (gitops-engine pkg/health). Anything else becomes Unknown.
var validStatus = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

type health struct {
	Status  string
	Message string
}

func script(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("health.lua")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// load reads a fixture as Argo CD holds a live object: unstructured content, integers as int64.
func load(t *testing.T, name string) *unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(b); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return u
}

// toLua converts unstructured content the way Argo CD's decodeValue does.
func toLua(L *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case json.Number:
		return lua.LString(v)
	case int:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case []interface{}:
		arr := L.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(toLua(L, item))
		}
		return arr
	case map[string]interface{}:
		tbl := L.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), toLua(L, item))
		}
		return tbl
	}
	return lua.LNil
}

// library is a Lua library to open: its name and its opener.
type library struct {
	name string
	fn   lua.LGFunction
}

// sandbox opens a Lua state as Argo CD's util/lua does: only the package, base and table
// libraries, and with a 1 s limit; extra libraries (name, opener) are opened after them. The
// caller closes the state and calls cancel.
func sandbox(extra ...library) (*lua.LState, context.CancelFunc, error) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	libs := append([]library{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	}, extra...)
	for _, lib := range libs {
		if err := L.CallByParam(lua.P{Fn: L.NewFunction(lib.fn), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			L.Close()
			return nil, nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	L.SetContext(ctx)
	return L, cancel, nil
}

// run executes the health script against obj in a sandbox like Argo CD's.
func run(src string, obj map[string]interface{}) (health, error) {
	L, cancel, err := sandbox()
	if err != nil {
		return health{}, err
	}
	defer L.Close()
	defer cancel()
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(src); err != nil {
		return health{}, err
	}
	ret := L.Get(-1)
	tbl, ok := ret.(*lua.LTable)
	if !ok {
		return health{}, fmt.Errorf("expect table output from Lua script, not %s", ret.Type())
	}
	h := health{}
	if s, ok := tbl.RawGetString("status").(lua.LString); ok {
		h.Status = string(s)
	}
	if m, ok := tbl.RawGetString("message").(lua.LString); ok {
		h.Message = string(m)
	}
	if !validStatus[h.Status] {
		return health{}, fmt.Errorf("Lua returned an invalid health status %q", h.Status)
	}
	return h, nil
}

func check(t *testing.T, obj map[string]interface{}, wantStatus string, wantMessage ...string) {
	t.Helper()
	h, err := run(script(t), obj)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s", h.Status, h.Message)
	if h.Status != wantStatus {
		t.Errorf("status = %q, want %q (message %q)", h.Status, wantStatus, h.Message)
	}
	for _, w := range wantMessage {
		if !strings.Contains(h.Message, w) {
			t.Errorf("message %q does not contain %q", h.Message, w)
		}
	}
}

// One fixture per phase, captured from the controller.
func TestFixtures(t *testing.T) {
	for _, tc := range []struct {
		fixture string
		status  string
		message []string
	}{
		{"running.json", "Progressing", []string{"Run in progress: run 1 step 2/3 (workspaces)"}},
		{"succeeded.json", "Healthy", []string{"Last run Succeeded", "next scheduled run at"}},
		{"failed.json", "Degraded", []string{"Last run failed: run 2: step accounts failed", "exit code 2"}},
		{"stalled.json", "Degraded", []string{"Stalled: InvalidSchedule", `"61 * * * *"`}},
		{"suspended.json", "Suspended", []string{"SyncSequence is suspended"}},
		{"generation-lagging.json", "Progressing", []string{"observe generation 2", "status reflects generation 1"}},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			check(t, load(t, tc.fixture).Object, tc.status, tc.message...)
		})
	}
}

// The Sync fixtures: a Sync's own health comes from its last run, whoever started it.
func TestSyncFixtures(t *testing.T) {
	for _, tc := range []struct {
		fixture string
		status  string
		message []string
	}{
		{"sync-running.json", "Progressing", []string{"Sync is running for sequence crm-hourly run 1"}},
		{"sync-succeeded.json", "Healthy", []string{"Last run Succeeded: accounts upserted"}},
		{"sync-failed.json", "Degraded", []string{"Last run failed (job crm-hourly-2-accounts-1-", "exit code 2"}},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			check(t, load(t, tc.fixture).Object, tc.status, tc.message...)
		})
	}
}

// Combinations not worth a separate capture, derived from the captured fixtures.
func TestDerived(t *testing.T) {
	t.Run("failed and suspended stays Degraded", func(t *testing.T) {
		u := load(t, "failed.json")
		unstructured.SetNestedField(u.Object, true, "spec", "suspend")
		check(t, u.Object, "Degraded", "Last run failed", "suspended")
	})
	t.Run("running while suspended is Progressing", func(t *testing.T) {
		u := load(t, "running.json")
		unstructured.SetNestedField(u.Object, true, "spec", "suspend")
		check(t, u.Object, "Progressing", "Run in progress")
	})
	t.Run("running after a failure is Progressing", func(t *testing.T) {
		u := load(t, "running.json")
		unstructured.SetNestedField(u.Object, "Failed", "status", "lastRunResult")
		check(t, u.Object, "Progressing")
	})
	t.Run("no status yet", func(t *testing.T) {
		u := load(t, "succeeded.json")
		unstructured.RemoveNestedField(u.Object, "status")
		check(t, u.Object, "Progressing", "Waiting for the syncseq controller")
	})
	t.Run("succeeded with errors is Healthy", func(t *testing.T) {
		u := load(t, "succeeded.json")
		unstructured.SetNestedField(u.Object, "SucceededWithErrors", "status", "lastRunResult")
		check(t, u.Object, "Healthy", "Last run SucceededWithErrors")
	})
	t.Run("missing Sync (Ready False, not stalled) is Progressing", func(t *testing.T) {
		u := load(t, "succeeded.json")
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			m := c.(map[string]interface{})
			if m["type"] == "Ready" {
				m["status"], m["reason"], m["message"] = "False", "SyncNotFound", "waiting for Sync(s) not found: contacts"
			}
		}
		unstructured.SetNestedSlice(u.Object, conds, "status", "conditions")
		check(t, u.Object, "Progressing", "SyncNotFound", "contacts")
	})
	t.Run("Sync without status yet", func(t *testing.T) {
		u := load(t, "sync-succeeded.json")
		unstructured.RemoveNestedField(u.Object, "status")
		check(t, u.Object, "Progressing", "Waiting for the syncseq controller to report the status of this Sync")
	})
	t.Run("Sync suspended", func(t *testing.T) {
		u := load(t, "sync-succeeded.json")
		unstructured.SetNestedField(u.Object, true, "spec", "suspend")
		check(t, u.Object, "Suspended", "Sync is suspended")
	})
	t.Run("Sync running by lastRun alone", func(t *testing.T) {
		u := load(t, "sync-running.json")
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		kept := []interface{}{}
		for _, c := range conds {
			if c.(map[string]interface{})["type"] != "Running" {
				kept = append(kept, c)
			}
		}
		unstructured.SetNestedSlice(u.Object, kept, "status", "conditions")
		check(t, u.Object, "Progressing", "Sync job crm-hourly-1-workspaces-1-4771268a is running for sequence run crm-hourly/1")
	})
}

// The ConfigMap snippet must install exactly health.lua, for both kinds.
func TestConfigMapPatch(t *testing.T) {
	b, err := os.ReadFile("argocd-cm-patch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Metadata struct{ Name, Namespace string }
		Data     map[string]string
	}
	if err := yaml.Unmarshal(b, &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Metadata.Name != "argocd-cm" {
		t.Errorf("metadata.name = %q, want argocd-cm", cm.Metadata.Name)
	}
	for _, key := range []string{
		"resource.customizations.health.syncseq.dev_SyncSequence",
		"resource.customizations.health.syncseq.dev_Sync",
	} {
		if cm.Data[key] != script(t) {
			t.Errorf("%s differs from health.lua: run gitops/argocd/render-cm-patch.sh", key)
		}
	}
}
