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
Every per-service template ranges over this list; those that also apply to the console range over
ncy.workloads.
*/}}
{{- define "ncy.services" -}}
cacheGateway: { binary: cache-gateway, postgres: true, websocket: false, rpcs: true }
jobScheduler: { binary: job-scheduler, postgres: false, websocket: false, rpcs: true }
worker: { binary: worker, postgres: true, websocket: false, rpcs: false }
realtimeGateway: { binary: realtime-gateway, postgres: true, websocket: true, rpcs: true }
{{- end -}}

{{/*
Every component with a Deployment: the four services and the operator console (values key →
component name, which is each resource's name suffix). The console serves web pages and no RPCs, so
its Deployment, Service, NetworkPolicy and Ingress are its own (console.yaml); the templates that need
nothing service-specific (ServiceAccount, PodDisruptionBudget, HPA, ServiceMonitor) range over this.
*/}}
{{- define "ncy.workloads" -}}
{{ include "ncy.services" . }}
console: { binary: console }
{{- end -}}

{{/* Directory the console's users Secret is mounted at (a directory, never subPath). */}}
{{- define "ncy.consoleUsersDir" -}}/etc/ncy/console{{- end -}}

{{/* The users file inside it (NCY_CONSOLE_USERS_FILE). */}}
{{- define "ncy.consoleUsersFile" -}}{{ include "ncy.consoleUsersDir" . }}/users.toml{{- end -}}

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
{{- range $flag := list "apiAuth.disabled" "realtimeGateway.jwt.allowAnyAudienceAndIssuer" "networkPolicy.enabled" "console.secureCookie" -}}
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
{{- include "ncy.validateConsole" . -}}
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

{{/*
The console's requirements, when it is enabled: its job-scheduler, its users and session Secrets, and
an API key for the job-scheduler unless apiAuth is waived. Part of ncy.validateValues.
*/}}
{{- define "ncy.validateConsole" -}}
{{- $c := .Values.console -}}
{{- if $c.enabled -}}
{{- $chartSet := dict
  "NCY_CONSOLE_ADDR" "ports.console"
  "NCY_CONSOLE_JOBS_URL" "the chart's job-scheduler Service"
  "NCY_CONSOLE_CACHE_URL" "the chart's cache-gateway Service"
  "NCY_CONSOLE_REALTIME_URL" "the chart's realtime-gateway Service"
  "NCY_CONSOLE_API_KEY" "console.secrets.apiKey"
  "NCY_CONSOLE_USERS_FILE" "console.secrets.users"
  "NCY_CONSOLE_SESSION_SECRET" "console.secrets.session"
  "NCY_CONSOLE_SESSION_IDLE_SECS" "console.sessionIdleSeconds"
  "NCY_CONSOLE_SECURE_COOKIE" "console.secureCookie and console.ingress.tlsSecretName" -}}
{{- range $var, $from := $chartSet -}}
{{- if hasKey ($c.env | default dict) $var -}}
{{- fail (printf "console.env sets %s: the chart sets it from %s; use that instead" $var $from) -}}
{{- end -}}
{{- end -}}
{{- if not .Values.jobScheduler.enabled -}}
{{- fail "console.enabled needs jobScheduler.enabled: the console talks only to the job-scheduler's gRPC API" -}}
{{- end -}}
{{- if not $c.secrets.users.name -}}
{{- fail (printf `

console.secrets.users.name is empty: the console signs operators in against a users file and does
not start without one. Write users.toml with one entry per operator (name, role "viewer" or
"operator", password_hash printed by "ncy-console hash-password", which reads the password on stdin),
create a Secret holding it and name it here, e.g.
  kubectl -n %s create secret generic ncy-console-users --from-file=users.toml=./users.toml
  --set console.secrets.users.name=ncy-console-users` .Release.Namespace) -}}
{{- end -}}
{{- if not $c.secrets.users.key -}}
{{- fail "console.secrets.users.key is empty: name the key of the Secret that holds the users file (e.g. users.toml)" -}}
{{- end -}}
{{- if not $c.secrets.session.name -}}
{{- fail (printf `

console.secrets.session.name is empty: the console signs its session cookies with a secret of at
least 32 characters, the same in every replica. Create a Secret holding one and name it here, e.g.
  kubectl -n %s create secret generic ncy-console-session --from-literal=secret="$(openssl rand -base64 48)"
  --set console.secrets.session.name=ncy-console-session` .Release.Namespace) -}}
{{- end -}}
{{- if not $c.secrets.session.key -}}
{{- fail "console.secrets.session.key is empty: name the key of the Secret that holds the session secret (e.g. secret)" -}}
{{- end -}}
{{- if not .Values.apiAuth.disabled -}}
{{- if not $c.secrets.apiKey.name -}}
{{- fail (printf `

console.secrets.apiKey.name is empty: the job-scheduler refuses calls without an API key (apiAuth is
on), so the console could show nothing. Add a key for the console to the API keys file
(secrets.apiKeys; scopes jobs:read, plus jobs:enqueue and jobs:admin for operators' actions),
put the key itself in a Secret and name it here, e.g.
  kubectl -n %s create secret generic ncy-console-api-key --from-literal=api-key="$KEY"
  --set console.secrets.apiKey.name=ncy-console-api-key
or, on a laptop or in a test only, waive authentication with --set apiAuth.disabled=true.` .Release.Namespace) -}}
{{- end -}}
{{- if not $c.secrets.apiKey.key -}}
{{- fail "console.secrets.apiKey.key is empty: name the key of the Secret that holds the console's API key (e.g. api-key)" -}}
{{- end -}}
{{- end -}}
{{- $idle := $c.sessionIdleSeconds | int -}}
{{- if or (lt $idle 1) (gt $idle 604800) -}}
{{- fail (printf "console.sessionIdleSeconds must be a whole number of seconds from 1 to 604800 (a week), got %v" $c.sessionIdleSeconds) -}}
{{- end -}}
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
