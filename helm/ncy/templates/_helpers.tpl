{{/* Chart name, truncated to the 63 characters Kubernetes allows in a label. */}}
{{- define "ncy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified prefix of every resource name. */}}
{{- define "ncy.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The four services: values key → binary name, whether it needs PostgreSQL, whether it serves
WebSockets. Every per-service template ranges over this list.
*/}}
{{- define "ncy.services" -}}
cacheGateway: { binary: cache-gateway, postgres: true, websocket: false }
jobScheduler: { binary: job-scheduler, postgres: false, websocket: false }
worker: { binary: worker, postgres: true, websocket: false }
realtimeGateway: { binary: realtime-gateway, postgres: true, websocket: true }
{{- end -}}

{{/* Labels shared by every resource. */}}
{{- define "ncy.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "ncy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ncy
{{- end -}}

{{/* Selector labels of one service; call with (dict "root" $ "binary" "cache-gateway"). */}}
{{- define "ncy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ncy.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .binary }}
{{- end -}}

{{/* The image reference. */}}
{{- define "ncy.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
