// Package kstatus checks that the conditions the controller writes mean what they should to
// kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status), the library behind `kubectl wait`-style
// tooling, Flux's health checks (before healthCheckExprs) and kpt/cli-utils appliers.
//
// The fixtures in ../testdata are captured from real controller runs by ../capture-fixtures.sh
// (generation-lagging.json is the one edited by hand; see ../README.md).
package kstatus

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

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

func TestCompute(t *testing.T) {
	for _, tc := range []struct {
		fixture string
		want    status.Status
		why     string
	}{
		// The spec is reconciled: Current, whatever the data runs do. A running or failed data
		// run must not hold up a GitOps rollout (Running and LastRunSucceeded are not kstatus
		// conditions).
		{"succeeded.json", status.CurrentStatus, "successful reconcile"},
		{"running.json", status.CurrentStatus, "a data run in progress does not make the spec unreconciled"},
		{"failed.json", status.CurrentStatus, "a failed data run does not make the spec unreconciled"},
		{"suspended.json", status.CurrentStatus, "suspend is a valid, reconciled spec"},
		// observedGeneration behind metadata.generation: the controller has not seen the spec yet.
		{"generation-lagging.json", status.InProgressStatus, "observedGeneration lags"},
		// Stalled=True (abnormal-true): the spec can never be reconciled as written.
		{"stalled.json", status.FailedStatus, "Stalled is True"},
		// Syncs follow the same conventions.
		{"sync-succeeded.json", status.CurrentStatus, "a reconciled Sync"},
		{"sync-running.json", status.CurrentStatus, "a Sync whose Job runs"},
		{"sync-failed.json", status.CurrentStatus, "a Sync whose last run failed"},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			res, err := status.Compute(load(t, tc.fixture))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %s", res.Status, res.Message)
			if res.Status != tc.want {
				t.Errorf("%s: status.Compute = %s (%q), want %s", tc.why, res.Status, res.Message, tc.want)
			}
		})
	}
}

// The Failed result carries the Stalled condition's reason and message, so `kubectl`/Flux users
// see why.
func TestStalledMessage(t *testing.T) {
	res, err := status.Compute(load(t, "stalled.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Conditions) != 1 || res.Conditions[0].Reason != "InvalidSchedule" || res.Message == "" {
		t.Errorf("want the Stalled condition (InvalidSchedule) and its message, got %+v", res)
	}
}

// Ready=False without Stalled (a referenced Sync is missing) reads as InProgress: waiting, not
// failed. Derived from the captured success fixture.
func TestReadyFalseIsInProgress(t *testing.T) {
	u := load(t, "succeeded.json")
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m := c.(map[string]interface{})
		if m["type"] == "Ready" {
			m["status"], m["reason"], m["message"] = "False", "SyncNotFound", "waiting for Sync(s) not found: contacts"
		}
	}
	if err := unstructured.SetNestedSlice(u.Object, conds, "status", "conditions"); err != nil {
		t.Fatal(err)
	}
	res, err := status.Compute(u)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != status.InProgressStatus {
		t.Errorf("status.Compute = %s (%q), want InProgress", res.Status, res.Message)
	}
}
