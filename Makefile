# Local Kubernetes control plane (see hack/README.md).
.PHONY: tools cluster cluster-down

# Build (or reuse) etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok and helm.
tools:
	hack/build-tools.sh

# Start the local control plane (or reuse the running one); prints the admin kubeconfig path.
cluster:
	hack/cluster-up.sh

# Stop every process of the local control plane and remove its state.
cluster-down:
	hack/cluster-down.sh
