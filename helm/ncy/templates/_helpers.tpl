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
WebSockets, whether it serves gRPC RPCs (and so needs API keys; the worker serves health only).
Every per-service template ranges over this list.
*/}}
{{- define "ncy.services" -}}
cacheGateway: { binary: cache-gateway, postgres: true, websocket: false, rpcs: true }
jobScheduler: { binary: job-scheduler, postgres: false, websocket: false, rpcs: true }
worker: { binary: worker, postgres: true, websocket: false, rpcs: false }
realtimeGateway: { binary: realtime-gateway, postgres: true, websocket: true, rpcs: true }
{{- end -}}

{{/* Directory the API keys Secret is mounted at (a directory, never subPath, so rotations arrive). */}}
{{- define "ncy.apiKeysDir" -}}/etc/ncy/api-keys{{- end -}}

{{/* The keys file inside it (NCY_API_KEYS_FILE). */}}
{{- define "ncy.apiKeysFile" -}}{{ include "ncy.apiKeysDir" . }}/api-keys.toml{{- end -}}

{{/*
Refuses values that would deploy an unauthenticated API by accident. Rendered once, from the
ConfigMap (every install renders it).
*/}}
{{- define "ncy.validateValues" -}}
{{- $root := . -}}
{{- range $flag := list "apiAuth.disabled" "realtimeGateway.jwt.allowAnyAudienceAndIssuer" "networkPolicy.enabled" -}}
{{- $v := $root.Values -}}
{{- range $part := splitList "." $flag }}{{ $v = index $v $part }}{{ end -}}
{{- if not (kindIs "bool" $v) -}}
{{- fail (printf "%s must be true or false, got %q" $flag (toString $v)) -}}
{{- end -}}
{{- end -}}
{{- $apiServices := list -}}
{{- range $key, $svc := include "ncy.services" . | fromYaml -}}
{{- $v := index $root.Values $key -}}
{{- if and $v.enabled $svc.rpcs -}}
{{- $apiServices = append $apiServices $svc.binary -}}
{{- end -}}
{{- range $var := list "NCY_API_AUTH" "NCY_API_KEYS_FILE" "NCY_API_KEYS_RELOAD_SECS" -}}
{{- if hasKey ($v.env | default dict) $var -}}
{{- fail (printf "%s.env sets %s: the chart sets it from secrets.apiKeys and apiAuth; use those instead" $key $var) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $apiServices (not .Values.apiAuth.disabled) -}}
{{- if not .Values.secrets.apiKeys.name -}}
{{- fail (printf `

secrets.apiKeys.name is empty: %s require API keys on their gRPC APIs.
Create a Secret holding the keys file and name it here, e.g.
  kubectl -n %s create secret generic ncy-api-keys --from-file=api-keys.toml=./api-keys.toml
  --set secrets.apiKeys.name=ncy-api-keys
or, on a laptop or in a test only, waive authentication with --set apiAuth.disabled=true
(any pod that reaches a gRPC port may then call every RPC).` (join ", " $apiServices) .Release.Namespace) -}}
{{- end -}}
{{- if not .Values.secrets.apiKeys.key -}}
{{- fail "secrets.apiKeys.key is empty: name the key of the Secret that holds the API keys file (e.g. api-keys.toml)" -}}
{{- end -}}
{{- $reload := .Values.apiAuth.keysReloadSeconds | int -}}
{{- if or (lt $reload 1) (gt $reload 3600) -}}
{{- fail (printf "apiAuth.keysReloadSeconds must be a whole number of seconds from 1 to 3600, got %v" .Values.apiAuth.keysReloadSeconds) -}}
{{- end -}}
{{- end -}}
{{- $jwt := .Values.realtimeGateway.jwt -}}
{{- if and .Values.realtimeGateway.enabled (not $jwt.allowAnyAudienceAndIssuer) (or (not $jwt.audience) (not $jwt.issuer)) -}}
{{- $missing := list -}}
{{- if not $jwt.audience }}{{ $missing = append $missing "realtimeGateway.jwt.audience" }}{{ end -}}
{{- if not $jwt.issuer }}{{ $missing = append $missing "realtimeGateway.jwt.issuer" }}{{ end -}}
{{- fail (printf `

%s must be set: the realtime gateway checks the aud and iss claims of a WebSocket
token against them. Without them ANY token signed with the same key would open a socket (with HS256,
e.g. the main app's password-reset tokens). Set both to what your auth server puts in socket tokens, e.g.
  --set realtimeGateway.jwt.audience=ncy-realtime --set realtimeGateway.jwt.issuer=https://auth.example.com
or, on a laptop or in a test only, waive the check with --set realtimeGateway.jwt.allowAnyAudienceAndIssuer=true (insecure).` (join " and " $missing)) -}}
{{- end -}}
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
