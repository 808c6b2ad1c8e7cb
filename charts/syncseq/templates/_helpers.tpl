{{/* Chart name, overridable. */}}
{{- define "syncseq.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or the release name when it already contains the chart name. */}}
{{- define "syncseq.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "syncseq.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "syncseq.selectorLabels" -}}
app.kubernetes.io/name: {{ include "syncseq.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "syncseq.labels" -}}
helm.sh/chart: {{ include "syncseq.chart" . }}
{{ include "syncseq.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: syncseq
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "syncseq.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "syncseq.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "syncseq.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Values that would render a broken or unsafe install fail early. */}}
{{- define "syncseq.validate" -}}
{{- if and (not .Values.leaderElection.enabled) (gt (int .Values.replicaCount) 1) }}
{{- fail "leaderElection.enabled=false needs replicaCount=1: two active controllers would race on the same sequences" }}
{{- end }}
{{- if not (has .Values.log.format (list "text" "json")) }}
{{- fail "log.format must be text or json" }}
{{- end }}
{{- if not (has .Values.podAntiAffinity (list "soft" "hard" "none")) }}
{{- fail "podAntiAffinity must be soft, hard or none" }}
{{- end }}
{{- range .Values.alertSecrets }}
{{- if not (kindIs "string" .) }}
{{- fail "alertSecrets must be a list of Secret names (strings)" }}
{{- end }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$" .) }}
{{- fail (printf "alertSecrets: %q is not a valid Secret name" .) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
What the controller does in the watched namespace(s). Shared by the ClusterRole (all namespaces)
and the Role (watchNamespace). No wildcards: every group, resource and verb is named.
*/}}
{{- define "syncseq.controllerRules" -}}
# Watch sequences and syncs (reflector caches and the controller's watches).
- apiGroups: ["syncseq.dev"]
  resources: ["syncsequences", "syncs"]
  verbs: ["get", "list", "watch"]
# Status is written with server-side apply (field manager syncseq): PATCH on the subresource.
- apiGroups: ["syncseq.dev"]
  resources: ["syncsequences/status", "syncs/status"]
  verbs: ["patch"]
# Jobs carry an owner reference with blockOwnerDeletion: true to their sequence or Sync; clusters
# that enforce OwnerReferencesPermissionEnforcement require update on the owner's finalizers.
- apiGroups: ["syncseq.dev"]
  resources: ["syncsequences/finalizers", "syncs/finalizers"]
  verbs: ["update"]
# One Job per step attempt; older runs' Jobs are deleted beyond historyLimit.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
# Job Pods: the sync's termination message and exit code.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# WebhookReceivers: their deliveries start runs; the leader keeps their path and Ready
# condition (merge patch), the webhook endpoint records deliveries (get, then update under
# the resourceVersion read).
- apiGroups: ["syncseq.dev"]
  resources: ["webhookreceivers"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["syncseq.dev"]
  resources: ["webhookreceivers/status"]
  verbs: ["get", "update", "patch"]
# Events for every run and step transition (events.k8s.io/v1; patch updates an Event series).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- with concat .Values.alertSecrets .Values.receiver.secrets | uniq }}
# Alert webhook URLs and receivers' signing secrets: only the named Secrets, read one at a
# time. Never list or watch.
- apiGroups: [""]
  resources: ["secrets"]
  resourceNames: {{ toJson . }}
  verbs: ["get"]
{{- end }}
{{- end }}

{{/*
The controller Deployments, as a JSON list of {name, key, selector, lease}: one for every
object without sharding; with sharding.shards, one per shard key (the objects labelled
sharding.syncseq.dev/shard=<key>) and the remainder (the objects without that label) under
the unsharded name. `lease` is the Lease the controller derives from its selector
(src/leader: <leaseName>-<first 10 hex digits of the selector's sha256>).
*/}}
{{- define "syncseq.instances" -}}
{{- $fullname := include "syncseq.fullname" . -}}
{{- $lease := .Values.leaderElection.leaseName -}}
{{- $out := list -}}
{{- if .Values.sharding.shards -}}
{{- $rest := "!sharding.syncseq.dev/shard" -}}
{{- $out = append $out (dict "name" $fullname "key" "" "selector" $rest "lease" (printf "%s-%s" $lease (sha256sum $rest | trunc 10))) -}}
{{- range .Values.sharding.shards -}}
{{- $selector := printf "sharding.syncseq.dev/shard=%s" . -}}
{{- $out = append $out (dict "name" (printf "%s-shard-%s" $fullname . | trunc 63 | trimSuffix "-") "key" . "selector" $selector "lease" (printf "%s-%s" $lease (sha256sum $selector | trunc 10))) -}}
{{- end -}}
{{- else -}}
{{- $out = append $out (dict "name" $fullname "key" "" "selector" "" "lease" $lease) -}}
{{- end -}}
{{- toJson $out -}}
{{- end }}
