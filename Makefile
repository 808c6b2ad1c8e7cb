# syncseq: build, test and demo. `make test` is what CI runs (.ci/run); `make demo` shows the
# main job on the local control plane. Both start the control plane if it is not running.
.PHONY: all build crds chart-docs lint test test-unit test-integration test-bench test-chart test-gitops test-rbac test-newcomer test-image image bench soak demo tools cluster cluster-down

CARGO ?= cargo

all: build

build:
	$(CARGO) build --locked

# Regenerate the CRDs from the Rust types (a unit test fails when they drift).
crds:
	$(CARGO) run --locked -q -- crd > crds/syncseq.dev_crds.yaml
	$(CARGO) run --locked -q -- crd --helm > charts/syncseq/templates/crds.yaml

# The chart's README, from charts/syncseq/README.md.gotmpl and values.yaml's comments.
chart-docs:
	"$$(hack/build-tools.sh helm-docs)/helm-docs" --chart-search-root charts/syncseq --log-level warning

# Quality gates: formatting and clippy with warnings as errors.
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# Unit and property tests of the pure core (schedule, engine, API), including the CRD drift check.
test-unit:
	$(CARGO) test --locked --lib --bins

# Integration tests against the real local control plane.
# tests/rollback.rs runs the previous release's controller too (hack/previous-release.sh builds
# it once per machine).
test-integration: cluster
	previous=$$(hack/previous-release.sh) && \
	  SYNCSEQ_PREVIOUS_BIN=$$previous $(CARGO) test --locked --features failpoints --test '*'

# The Helm chart: lint, render, server-side dry-run, RBAC checks, and a run under the chart's
# ServiceAccount instead of admin.
test-chart: cluster build
	SYNCSEQ_BIN=target/debug/syncseq hack/test-chart.sh

# The run-order, failure and schedule integration tests again, with the controller running as
# the chart's ServiceAccount instead of admin.
test-rbac: cluster
	hack/test-as-serviceaccount.sh

# docs/install.md followed as written: the chart installed, checked, and the CRM example run, with
# the controller as the installed ServiceAccount. Deletes the syncseq CRDs first: after the
# other cluster tests.
test-newcomer: cluster build
	hack/test-newcomer.sh

# Argo CD Lua health check (gopher-lua), kstatus and Flux health expressions on captured fixtures.
test-gitops:
	cd gitops && go mod download && go test ./...

# The controller image, built without a container engine (crane) and checked, and the krew
# plugin manifest, validated by krew's validator and installed by krew (hack/image.sh,
# hack/krew.sh; both build a static release binary).
test-image image:
	hack/image.sh
	hack/krew.sh

# Everything CI checks.
test: lint test-unit test-integration test-chart test-rbac test-newcomer test-gitops test-image test-bench

# Scale benchmark on the local control plane, measured from outside the controller beside a
# floor program and CronJob (BENCH_SEQUENCES, default 1000; BENCH_HISTORY_ROUNDS=3 first runs
# every sequence three times and keeps their Jobs); see bench/REPORT.md.
bench: cluster
	$(CARGO) bench --locked --bench scale

# The benchmark's short version, in CI so that `make bench` keeps working: 20 diamonds (the
# graph shape, which covers the chain's code paths too) beside the floor, no scheduled side,
# on the test profile's build. Its figures are not measurements (a debug build).
test-bench: cluster
	BENCH_SEQUENCES=20 BENCH_SCHEDULED=0 BENCH_SHAPE=diamond $(CARGO) test --locked --bench scale

# The long fault runs (not in CI, which runs them short): 100 leader kills over a few hundred
# runs, and a 10-minute alert receiver outage with a controller restart. See bench/SOAK.md.
soak: cluster
	SYNCSEQ_SOAK_KILLS=100 SYNCSEQ_TEST_OUTAGE_SECONDS=600 $(CARGO) test --locked --features failpoints \
		--test soak --test e2e -- --nocapture \
		the_promises_hold_while_the_leader_is_killed a_notification_survives_a_receiver_outage

# Start the control plane, run the controller, apply the CRM example, trigger it and watch the
# three steps run in order; ends with `kubectl describe` of the finished sequence.
demo:
	hack/demo.sh

# Build (or reuse) etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok and helm.
tools:
	hack/build-tools.sh --all

# Start the local control plane (or reuse the running one); prints the admin kubeconfig path.
cluster:
	hack/cluster-up.sh

# Stop every process of the local control plane and remove its state.
cluster-down:
	hack/cluster-down.sh
