{{/* The chart name, truncated to the 63 characters of a label. */}}
{{- define "tollgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of the release's objects. */}}
{{- define "tollgate.fullname" -}}
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

{{- define "tollgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "tollgate.labels" -}}
helm.sh/chart: {{ include "tollgate.chart" . }}
{{ include "tollgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the controller's pods. */}}
{{- define "tollgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tollgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tollgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tollgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tollgate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The subject every binding grants to. */}}
{{- define "tollgate.subject" -}}
- kind: ServiceAccount
  name: {{ include "tollgate.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{/*
The rules tollgate needs where it gates Rollouts: cluster-wide in a ClusterRole when it watches
every namespace, else in a Role in each watched namespace. Secrets are granted apart (see
rbac.secrets).
*/}}
{{- define "tollgate.rules" -}}
# Find Rollouts at a gated pause and read their steps; patch: the nudge annotation after a promote.
- apiGroups: ["argoproj.io"]
  resources: ["rollouts"]
  verbs: ["get", "list", "watch", "patch"]
# Promote and abort, with the patches the Argo plugin sends.
- apiGroups: ["argoproj.io"]
  resources: ["rollouts/status"]
  verbs: ["patch"]
# Read the gates.
- apiGroups: ["tollgate.dev"]
  resources: ["rolloutgates"]
  verbs: ["get", "list", "watch"]
# Record phases, verdicts and intents in the gates' status.
- apiGroups: ["tollgate.dev"]
  resources: ["rolloutgates/status"]
  verbs: ["patch"]
# Events on Rollouts and gates for every decision.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# Pod health, and the pod IPs the HTTP probe sends to; listed only while a Rollout waits at a
# gated pause (no watch).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
{{- end }}

{{/* Source credentials, CA bundles, probe and webhook headers a gate names. */}}
{{- define "tollgate.secretRules" -}}
# Source credentials, CA bundles, probe and webhook headers a gate names (in its own namespace).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}

{{/* Refuses combinations of values that would install something other than what they say. */}}
{{- define "tollgate.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount above 1 needs leaderElection.enabled: without it every replica would act on the same pauses" }}
{{- end }}
{{- if and .Values.watchNamespaces .Values.rbac.secretNamespaces }}
{{- fail "rbac.secretNamespaces applies only when watchNamespaces is empty: with watchNamespaces set, rbac.secrets=namespaces grants Secrets in the watched namespaces" }}
{{- end }}
{{- if ne (len .Values.watchNamespaces) (len (uniq .Values.watchNamespaces)) }}
{{- fail "watchNamespaces lists a namespace twice" }}
{{- end }}
{{- end }}

{{/*
The leader-election Lease: `tollgate` unless set, whatever the release is called, so two releases
in one namespace (or one renamed across an upgrade) share one Lease and never both act.
*/}}
{{- define "tollgate.leaseName" -}}
{{- default "tollgate" .Values.leaderElection.leaseName }}
{{- end }}
