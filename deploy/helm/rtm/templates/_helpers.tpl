{{/* Names ------------------------------------------------------------- */}}
{{- define "rtm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rtm.fullname" -}}
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

{{/* The four long-running processes, in a fixed order. */}}
{{- define "rtm.components" -}}
api jobs watcher reconciler
{{- end -}}

{{- define "rtm.stack" -}}
{{- default .Release.Name .Values.stack -}}
{{- end -}}

{{/* Labels ------------------------------------------------------------ */}}
{{- define "rtm.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rtm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rtm.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "rtm.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: galaxy
{{- end -}}

{{/* ctx: dict "root" $ "component" "api" */}}
{{- define "rtm.componentSelectorLabels" -}}
{{ include "rtm.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "rtm.componentLabels" -}}
{{ include "rtm.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Image ------------------------------------------------------------- */}}
{{- define "rtm.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "rtm.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "rtm.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Secrets ------------------------------------------------------------ */}}
{{- define "rtm.secretName" -}}
{{- default (include "rtm.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* The hook Job runs before the release's own Secret exists (pre-install):
     it reads a hook-managed copy, unless an existing Secret is used. */}}
{{- define "rtm.migrationSecretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- printf "%s-migrate" (include "rtm.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "rtm.secretData" -}}
{{ .Values.secrets.keys.postgresDsn }}: {{ required "secrets.postgresDsn (or secrets.existingSecret) is required" .Values.secrets.postgresDsn | b64enc | quote }}
{{- if .Values.secrets.redisPassword }}
{{ .Values.secrets.keys.redisPassword }}: {{ .Values.secrets.redisPassword | b64enc | quote }}
{{- end }}
{{- if .Values.secrets.internalApiToken }}
{{ .Values.secrets.keys.internalApiToken }}: {{ .Values.secrets.internalApiToken | b64enc | quote }}
{{- end }}
{{- end -}}

{{/* Environment ------------------------------------------------------- */}}
{{/* Non-secret settings, as a map (ConfigMap data and the hook Job's env). */}}
{{- define "rtm.configData" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $_ := set $cfg "RTMANAGER_STACK" (include "rtm.stack" .) -}}
{{- $_ := set $cfg "RTMANAGER_REDIS_MASTER_ADDR" .Values.redis.masterAddr -}}
{{- $_ := set $cfg "RTMANAGER_GAME_STATE_OWNER_UID" (toString .Values.podSecurityContext.runAsUser) -}}
{{- $_ := set $cfg "RTMANAGER_GAME_STATE_OWNER_GID" (toString .Values.gameState.engineGid) -}}
{{- if eq .Values.docker.mode "tcp" -}}
{{- $_ := set $cfg "RTMANAGER_DOCKER_HOST" .Values.docker.tcp.host -}}
{{- if .Values.docker.tcp.tls.enabled -}}
{{- $_ := set $cfg "RTMANAGER_DOCKER_TLS_CA" (printf "%s/ca.pem" .Values.docker.tcp.tls.mountPath) -}}
{{- $_ := set $cfg "RTMANAGER_DOCKER_TLS_CERT" (printf "%s/cert.pem" .Values.docker.tcp.tls.mountPath) -}}
{{- $_ := set $cfg "RTMANAGER_DOCKER_TLS_KEY" (printf "%s/key.pem" .Values.docker.tcp.tls.mountPath) -}}
{{- end -}}
{{- else -}}
{{- $_ := set $cfg "RTMANAGER_DOCKER_HOST" "unix:///var/run/docker.sock" -}}
{{- end -}}
{{- with .Values.selfHealing -}}
{{- if .autoRestart.enabled -}}
{{- $a := .autoRestart -}}
{{- $_ := set $cfg "RTMANAGER_AUTO_RESTART" "on" -}}
{{- $_ := set $cfg "RTMANAGER_AUTO_RESTART_BACKOFF_INITIAL" $a.backoffInitial -}}
{{- $_ := set $cfg "RTMANAGER_AUTO_RESTART_BACKOFF_FACTOR" (toString $a.backoffFactor) -}}
{{- $_ := set $cfg "RTMANAGER_AUTO_RESTART_BACKOFF_MAX" $a.backoffMax -}}
{{- $_ := set $cfg "RTMANAGER_AUTO_RESTART_BACKOFF_JITTER" (toString $a.backoffJitter) -}}
{{- $_ := set $cfg "RTMANAGER_AUTO_RESTART_BUDGET" (toString $a.budget) -}}
{{- $_ := set $cfg "RTMANAGER_AUTO_RESTART_WINDOW" $a.window -}}
{{- $_ := set $cfg "RTMANAGER_AUTO_RESTART_RESET_AFTER" $a.resetAfter -}}
{{- $_ := set $cfg "RTMANAGER_AUTO_RESTART_COUNT_CLEAN_EXIT" (toString $a.countCleanExit) -}}
{{- end -}}
{{- if .patchHealthGate.enabled -}}
{{- $g := .patchHealthGate -}}
{{- $_ := set $cfg "RTMANAGER_PATCH_HEALTH_GATE" "on" -}}
{{- $_ := set $cfg "RTMANAGER_PATCH_GATE_PROBES" (toString $g.probes) -}}
{{- $_ := set $cfg "RTMANAGER_PATCH_GATE_DEADLINE" $g.deadline -}}
{{- $_ := set $cfg "RTMANAGER_PATCH_GATE_INTERVAL" $g.interval -}}
{{- $_ := set $cfg "RTMANAGER_PATCH_SNAPSHOTS" (ternary "on" "off" $g.snapshots.enabled) -}}
{{- $_ := set $cfg "RTMANAGER_PATCH_SNAPSHOT_KEEP" (toString $g.snapshots.keep) -}}
{{- $_ := set $cfg "RTMANAGER_PATCH_SNAPSHOT_MAX_AGE" $g.snapshots.maxAge -}}
{{- $_ := set $cfg "RTMANAGER_PATCH_SNAPSHOT_MAX_SIZE" $g.snapshots.maxSize -}}
{{- end -}}
{{- if .startWaitReady.enabled -}}
{{- $_ := set $cfg "RTMANAGER_START_WAIT_READY" "on" -}}
{{- $_ := set $cfg "RTMANAGER_START_READY_TIMEOUT" .startWaitReady.timeout -}}
{{- end -}}
{{- end -}}
{{- with .Values.engineUsage -}}
{{- if .enabled -}}
{{- $_ := set $cfg "RTMANAGER_ENGINE_USAGE" "on" -}}
{{- $_ := set $cfg "RTMANAGER_ENGINE_USAGE_CONCURRENCY" (toString .concurrency) -}}
{{- $_ := set $cfg "RTMANAGER_ENGINE_USAGE_PER_GAME_LABEL" (ternary "on" "off" .perGameLabel) -}}
{{- end -}}
{{- end -}}
{{- if .Values.metrics.enabled -}}
{{- $_ := set $cfg "OTEL_METRICS_EXPORTER" "prometheus" -}}
{{- $_ := set $cfg "OTEL_EXPORTER_PROMETHEUS_HOST" "0.0.0.0" -}}
{{- $_ := set $cfg "OTEL_EXPORTER_PROMETHEUS_PORT" (toString .Values.metrics.port) -}}
{{- end -}}
{{- range $k, $v := $cfg }}
{{ $k }}: {{ $v | toString | quote }}
{{- end }}
{{- end -}}

{{/* Secret env vars (secretKeyRef); redis password and token are optional. */}}
{{- define "rtm.secretEnv" -}}
{{- $name := .secretName -}}
{{- $keys := .root.Values.secrets.keys -}}
- name: RTMANAGER_POSTGRES_PRIMARY_DSN
  valueFrom:
    secretKeyRef:
      name: {{ $name }}
      key: {{ $keys.postgresDsn }}
- name: RTMANAGER_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $name }}
      key: {{ $keys.redisPassword }}
      optional: true
- name: RTMANAGER_INTERNAL_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $name }}
      key: {{ $keys.internalApiToken }}
      optional: true
{{- end -}}

{{/* Pod-level pieces shared by the Deployments, the Job and the test pod. */}}
{{- define "rtm.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}
