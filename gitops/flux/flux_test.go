// Package flux evaluates the healthCheckExprs of kustomization.yaml the way Flux's
// kustomize-controller does (fluxcd/pkg runtime/cel: NewExpression's CEL environment, parsed not
// compiled, the object's top-level fields as variables, and StatusEvaluator's order) against the
// fixtures captured from the controller in ../testdata.
package flux

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

type exprs struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Current    string `json:"current"`
	InProgress string `json:"inProgress"`
	Failed     string `json:"failed"`
}

func exprsFor(t *testing.T, kind string) exprs {
	t.Helper()
	b, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ks struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Spec       struct {
			HealthCheckExprs []map[string]string `json:"healthCheckExprs"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &ks); err != nil {
		t.Fatal(err)
	}
	if ks.APIVersion != "kustomize.toolkit.fluxcd.io/v1" || ks.Kind != "Kustomization" {
		t.Fatalf("not a Flux Kustomization: %s %s", ks.APIVersion, ks.Kind)
	}
	for _, m := range ks.Spec.HealthCheckExprs {
		// The fields of Flux's CustomHealthCheck; anything else is a typo Flux would reject.
		for k := range m {
			switch k {
			case "apiVersion", "kind", "current", "inProgress", "failed":
			default:
				t.Fatalf("healthCheckExprs: unknown field %q", k)
			}
		}
		e := exprs{m["apiVersion"], m["kind"], m["current"], m["inProgress"], m["failed"]}
		if e.APIVersion == "syncseq.dev/v1alpha1" && e.Kind == kind {
			if e.Current == "" {
				t.Fatal("current is required")
			}
			return e
		}
	}
	t.Fatalf("no healthCheckExprs entry for syncseq.dev/v1alpha1 %s", kind)
	return exprs{}
}

// evalBool mirrors fluxcd/pkg runtime/cel NewExpression (without WithCompile) + EvaluateBoolean.
func evalBool(expr string, obj map[string]interface{}) (bool, error) {
	env, err := cel.NewEnv(
		cel.HomogeneousAggregateLiterals(),
		cel.EagerlyValidateDeclarations(true),
		cel.DefaultUTCTimeZone(true),
		cel.CrossTypeNumericComparisons(true),
		cel.OptionalTypes(),
		ext.Strings(),
		ext.Sets(),
		ext.Encoders(),
	)
	if err != nil {
		return false, err
	}
	ast, iss := env.Parse(expr)
	if iss != nil && iss.Err() != nil {
		return false, fmt.Errorf("parsing %q: %w", expr, iss.Err())
	}
	prog, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.InterruptCheckFrequency(100))
	if err != nil {
		return false, err
	}
	val, _, err := prog.ContextEval(context.Background(), obj)
	if err != nil {
		return false, fmt.Errorf("evaluating %q: %w", expr, err)
	}
	b, ok := val.(types.Bool)
	if !ok {
		return false, fmt.Errorf("%q is not a boolean expression", expr)
	}
	return bool(b), nil
}

// evaluate mirrors fluxcd/pkg runtime/cel StatusEvaluator.Evaluate.
func evaluate(e exprs, u *unstructured.Unstructured) (string, error) {
	obj := u.UnstructuredContent()
	if og, ok, _ := unstructured.NestedInt64(obj, "status", "observedGeneration"); ok {
		if g, ok, _ := unstructured.NestedInt64(obj, "metadata", "generation"); ok && og != g {
			return "InProgress", nil
		}
	}
	for _, step := range []struct{ expr, status string }{
		{e.InProgress, "InProgress"},
		{e.Failed, "Failed"},
		{e.Current, "Current"},
	} {
		if step.expr == "" {
			continue
		}
		ok, err := evalBool(step.expr, obj)
		if err != nil {
			return "", err
		}
		if ok {
			return step.status, nil
		}
	}
	return "InProgress", nil
}

func load(t *testing.T, name string) *unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	return u
}

func TestHealthCheckExprs(t *testing.T) {
	e := exprsFor(t, "SyncSequence")
	for _, tc := range []struct{ fixture, want string }{
		{"succeeded.json", "Current"},
		{"running.json", "Current"}, // a data run does not hold up a deploy
		{"failed.json", "Current"},  // nor does a failed data run
		{"suspended.json", "Current"},
		{"stalled.json", "Failed"},
		{"generation-lagging.json", "InProgress"},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			got, err := evaluate(e, load(t, tc.fixture))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}

	t.Run("Ready False without Stalled waits", func(t *testing.T) {
		u := load(t, "succeeded.json")
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			if m := c.(map[string]interface{}); m["type"] == "Ready" {
				m["status"], m["reason"] = "False", "SyncNotFound"
			}
		}
		if err := unstructured.SetNestedSlice(u.Object, conds, "status", "conditions"); err != nil {
			t.Fatal(err)
		}
		got, err := evaluate(e, u)
		if err != nil {
			t.Fatal(err)
		}
		if got != "InProgress" {
			t.Errorf("got %s, want InProgress", got)
		}
	})
}

func TestSyncHealthCheckExprs(t *testing.T) {
	e := exprsFor(t, "Sync")
	for _, tc := range []struct{ fixture, want string }{
		{"sync-succeeded.json", "Current"},
		{"sync-running.json", "Current"},
		{"sync-failed.json", "Current"},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			got, err := evaluate(e, load(t, tc.fixture))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}
